"""Storage and retrieval of a dataset's binary streams (DataStack's ``data_stack.io``)."""
