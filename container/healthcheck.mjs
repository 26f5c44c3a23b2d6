// Docker HEALTHCHECK: healthy when the gateway answers GET /healthz with 200 and {"ok":true}.
// Node is already in the image, so no curl is needed. Exit 0 = healthy, 1 = unhealthy.
import http from "node:http";

const port = Number(process.env.MOLT_HEALTH_PORT || 18789);
const request = http.get(
  { host: "127.0.0.1", port, path: "/healthz", timeout: 4000 },
  (response) => {
    let body = "";
    response.setEncoding("utf8");
    response.on("data", (chunk) => {
      body += chunk;
    });
    response.on("end", () => {
      let ok = false;
      try {
        ok = response.statusCode === 200 && JSON.parse(body).ok === true;
      } catch {
        ok = false;
      }
      if (!ok) console.error(`healthz: HTTP ${response.statusCode} ${body.slice(0, 200)}`);
      process.exit(ok ? 0 : 1);
    });
  },
);
request.on("timeout", () => request.destroy(new Error("timed out after 4s")));
request.on("error", (err) => {
  console.error(`healthz: ${err.message}`);
  process.exit(1);
});
