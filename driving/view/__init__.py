"""The live view: watch a drive in the browser while it happens.

    state.py       what is kept of a drive (bounded rings, the latest frame) and read per page
    sources.py     feeding it: the headless simulator's DriveObserver, drive.py's server listener
    server.py      the page and its Server-Sent Events stream, on 127.0.0.1
    static/        the page: plain HTML, CSS and a script that draws on canvases
    browser.py     headless Chromium for the screenshot command and the browser test
    screenshot.py  a short drive with the view on, saved as a PNG
    __main__.py    python -m driving.view screenshot OUT.png MODEL

Used by `python -m driving.sim drive|eval ... --view` and `python drive.py MODEL --view`; see
docs/view.md. Nothing here runs unless --view is given.
"""
