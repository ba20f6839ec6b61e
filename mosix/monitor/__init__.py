"""mon and mmon: terminal monitors over MosixNode objects.

Pure views (views.py) turn nodes and a time into charts, render.py draws them as text,
app.py is the thin textual App both commands share; mon.py and mmon.py parse the command lines.
"""
