"""An image-folder dataset retrieved over HTTP as an archive (the photos counterpart of DataStack's MNIST)."""
