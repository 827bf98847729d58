"""`dialoguellm watch`: a live web page of the conversations being labelled, for supervisors.

board.py (pure) folds the labels and alerts streams into per-conversation summaries ranked by
risk; feed.py keeps a board in step with Redis (read-only) and tells subscribers what changed;
app.py serves the page, its JSON and the Server-Sent Events; security.py holds the token and the
response headers; server.py runs it all under uvicorn.
"""
