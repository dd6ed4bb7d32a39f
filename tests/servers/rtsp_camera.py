"""A real RTSP camera on 127.0.0.1 for the tests: GStreamer's RTSP server (gst-rtsp-server).

Run with the SYSTEM python (the GObject bindings come from Debian's ``python3-gi`` and
``gir1.2-gst-rtsp-server-1.0``, not from PyPI)::

    /usr/bin/python3 tests/servers/rtsp_camera.py --port 8554 --image frame.jpg --size 640x480 --codec h264

serves ``rtsp://127.0.0.1:<port>/cam``: the image at 5 frames a second, encoded as H.264
(what IP cameras send) or as JPEG (RTP/JPEG, what cheap cameras and mjpg-streamer's RTSP
plug-in send). A live camera's picture is never the same twice (its sensor's noise, the
toolhead): faint noise, as a sensor's, is laid over it (``--size``: the image's, WxH).
``--still`` serves the very same picture over and over: a camera frozen on one frame. Prints ``ready`` on stdout once it listens; SIGTERM stops
it. ``tests/plugins/rtsp.py`` starts and stops it.
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

ENCODERS = {
    "h264": "openh264enc ! video/x-h264,profile=constrained-baseline ! rtph264pay name=pay0 pt=96 config-interval=1",
    "mjpeg": "jpegenc quality=90 ! rtpjpegpay name=pay0 pt=26",
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--image", required=True, help="JPEG file to serve")
    ap.add_argument("--codec", choices=sorted(ENCODERS), default="h264")
    ap.add_argument("--size", required=True, help="the image's WIDTHxHEIGHT")
    ap.add_argument("--still", action="store_true", help="the very same picture every frame")
    args = ap.parse_args()
    Gst.init(None)
    image = (
        f"filesrc location={args.image} ! jpegdec ! videoconvert ! imagefreeze is-live=true "
        "! video/x-raw,framerate=5/1"
    )
    out = f"videoconvert ! video/x-raw,format=I420 ! {ENCODERS[args.codec]}"
    if args.still:
        launch = f"( {image} ! {out} )"
    else:
        width, height = (int(v) for v in args.size.split("x"))
        launch = (  # a sensor's noise: a few grey levels, different in every frame
            f"( compositor name=mix sink_1::alpha=0.03 ! video/x-raw,framerate=5/1 ! {out} "
            f"{image} ! mix.sink_0 "
            "videotestsrc pattern=snow is-live=true "
            f"! video/x-raw,width={width},height={height},framerate=5/1 ! mix.sink_1 )"
        )
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch)
    factory.set_shared(True)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    server.get_mount_points().add_factory("/cam", factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, loop.quit)
    print("ready", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
