"""`make bench`: the generated service measured against tiny references in the same run."""
