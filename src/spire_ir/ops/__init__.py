"""The restoration ops: what each op does to an image (``image``) and, in one table, how it is written, drawn,
shown and undone (``registry``)."""
