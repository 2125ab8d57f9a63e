"""What a browser sees: the SREs' live status page and the traders' public status feed.

Both are read-only views of what `failover status` reads (the store) and of the daemon's own state, built as plain
data (`document`, `feed`) and served by the daemon's small HTTP server (`routes`); the page's HTML, script and style
ship in the package (`assets/`), so it works on a host without internet and needs no build step.
"""
