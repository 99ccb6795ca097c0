"""One module for each part of the console; each lists its `routes`."""
