"""``kvern dashboard``: a local Streamlit app over report folders (the ``dashboard`` extra).

The top layer, beside the commands: it only reads what the commands wrote (report folders,
through ``kvern.report.folder``), so it works on old runs and CI artifacts alike. ``app.py`` is
the Streamlit entry, ``pages/`` one module per page, ``data.py`` the loading they share,
``launch.py`` what the CLI calls. Importing this package needs no Streamlit.
"""
