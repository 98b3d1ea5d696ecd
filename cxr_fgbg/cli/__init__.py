"""The `cxr-fgbg` command line. Thin: it parses arguments, loads the config and calls the library.

Each stage's commands live in their own module here with a `register(app)` function; `app.py`
discovers them. Command modules import the library inside the command functions so that
`cxr-fgbg --help` stays fast.
"""
