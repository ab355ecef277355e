"""End to end: the Footage page's annotated video (VP9 in MP4, what its runs write) plays in
headless Chromium through st.video (detect's faster default, mp4v, plays in no browser)."""
from __future__ import annotations

import pytest

from tests.app import factory
from tests.e2e import browser as B

pytestmark = pytest.mark.e2e

PLAYS = """async () => {
  const v = document.querySelector('video');
  v.muted = true;
  if (v.readyState < 2) await new Promise((ok, bad) => {
    v.addEventListener('loadeddata', ok, {once: true});
    v.addEventListener('error', () => bad(new Error(v.error && v.error.message)), {once: true});
  });
  await v.play();
  await new Promise(ok => setTimeout(ok, 700));
  return {width: v.videoWidth, time: v.currentTime, error: v.error && v.error.message};
}"""


def test_annotated_video_plays_in_chromium(tmp_path, shared_data):
    from pipelines import detect, promote

    B.require_chromium()
    ws = factory.build(tmp_path / "ws", 0, model=False)
    promote.import_keras(ws, promote.KerasImportOptions(
        path=shared_data / "peer" / "OFMClassifier.h5"))
    rep = detect.run(ws, detect.DetectOptions(
        sources=[str(shared_data / "videos" / "pedestrians_eyelevel_640x360.mp4")], fps=3,
        max_seconds=3, codec="vp09", out=str(ws.root / "detections" / "e2e")))
    assert rep.codec == "vp09"
    ws.dispose()
    with B.app_server(ws.root, log=B.ARTIFACTS / "e2e-footage-server.log") as url, \
            B.chromium() as browser:
        page = B.sign_in(browser, url, "alice", "alice-password")
        B.open_page(page, "Footage", "video")
        played = page.evaluate(PLAYS)
        B.screenshot(page, "16-footage")
    assert played["error"] is None and played["width"] == 640 and played["time"] > 0.2
