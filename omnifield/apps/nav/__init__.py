"""Robot navigation in a field: planning through density (differential flatness, A*, Adam) and
vision-only pose estimation against the field's rendering."""
