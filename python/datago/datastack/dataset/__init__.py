"""Indexable dataset iterators, views, splits and combinations (DataStack's ``data_stack.dataset``)."""
