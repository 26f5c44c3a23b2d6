"""Which Moltworker bucket to open in the Memory screen: its location as the CLI takes it
(``r2://BUCKET`` or ``s3://BUCKET/PREFIX``) and, for an S3 server of one's own, its endpoint.

The screen asks; the backend reads the bucket (with the credentials in its keys file or
environment: R2_ACCESS_KEY_ID, R2_SECRET_ACCESS_KEY, CF_ACCOUNT_ID), so nothing secret is typed
here. A location is checked for its form before it is sent, so a typo is said at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

SCHEMES = ("r2://", "s3://")


@dataclass(frozen=True, slots=True)
class BucketPlace:
    """A Moltworker bucket to browse: its location, and the S3 endpoint when one is needed."""

    location: str
    endpoint_url: str | None = None

    @property
    def view(self) -> str:
        """The view's name in the screen's messages (a snapshot's is its id, now's None)."""
        return f"moltworker:{self.location} {self.endpoint_url or ''}".rstrip()


def location_problem(location: str) -> str | None:
    """What is wrong with the form of ``location``, or None (the backend checks the rest)."""
    if not location:
        return "say which bucket: r2://BUCKET (Cloudflare R2) or s3://BUCKET/PREFIX"
    if not location.lower().startswith(SCHEMES):
        return "a bucket's location starts with r2:// (Cloudflare R2) or s3:// (AWS, SeaweedFS, MinIO)"
    if not location.split("://", 1)[1].strip("/"):
        return "the location names no bucket: write r2://BUCKET or s3://BUCKET/PREFIX"
    return None


class BucketOpenScreen(ModalScreen[BucketPlace | None]):
    """Asks for a Moltworker bucket; answers it, or None on escape."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="memory.bucket.cancel")]

    def __init__(self, last: BucketPlace | None = None) -> None:
        super().__init__()
        self.last = last

    def compose(self) -> ComposeResult:
        with Vertical(id="bucket-box"):
            yield Static(Text("Open a Moltworker bucket, read-only", style="bold"), id="bucket-title")
            yield Static(Text(
                "Its files show where they would go in the sandbox; nothing in the bucket or the "
                "sandbox changes until you import it (i). The backend reads it with the keys it "
                "holds (R2_ACCESS_KEY_ID, R2_SECRET_ACCESS_KEY, CF_ACCOUNT_ID).", style="dim",
            ), id="bucket-help")
            yield Input(self.last.location if self.last else "", placeholder="r2://BUCKET or s3://BUCKET/PREFIX",
                        id="bucket-location")
            yield Input(self.last.endpoint_url or "" if self.last else "",
                        placeholder="endpoint URL: only for s3:// on your own server (SeaweedFS, MinIO)",
                        id="bucket-endpoint")
            yield Static(id="bucket-problem")
            yield Static(Text.assemble(("enter", "bold"), " open   ", ("tab", "bold"), " next field   ",
                                       ("esc", "bold"), " cancel"), id="bucket-keys")

    def on_mount(self) -> None:
        self.app.clear_notifications()  # a toast left over would hide part of the box
        self.query_one("#bucket-problem").display = False
        self.query_one("#bucket-location", Input).focus()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        location = self.query_one("#bucket-location", Input).value.strip()
        endpoint = self.query_one("#bucket-endpoint", Input).value.strip()
        problem = location_problem(location)
        if problem is None and endpoint and not endpoint.lower().startswith(("http://", "https://")):
            problem = "the endpoint is a URL: http://HOST:PORT or https://HOST (or leave it empty for R2)"
        if problem is not None:
            shown = self.query_one("#bucket-problem", Static)
            shown.update(Text(problem, style="bold red"))
            shown.display = True
            return
        self.dismiss(BucketPlace(location, endpoint or None))

    def action_cancel(self) -> None:
        """Close without opening anything."""
        self.dismiss(None)
