"""Contest data, in the order an image travels: `contest` indexes and checks the folder, `decode` turns one
file into pixels, `cache` decodes each image once and keeps the pixels on disk, `similarity` finds
near-duplicate images (for grouped folds and the audit)."""

from competition.data.cache import cache_dir, decode_images, load_images, unreadable_message
from competition.data.contest import (Contest, Layout, OnBad, class_counts, image_id, index_contest, is_image, load_contest,
                                      print_class_counts, write_skipped)
from competition.data.decode import IMAGE_EXTENSIONS, DecodeOptions, UnreadableImage, decode_image

__all__ = ["IMAGE_EXTENSIONS", "Contest", "DecodeOptions", "OnBad", "UnreadableImage", "cache_dir", "class_counts",
           "decode_image", "decode_images", "image_id", "index_contest", "is_image", "Layout", "load_contest",
           "load_images", "print_class_counts", "unreadable_message", "write_skipped"]
