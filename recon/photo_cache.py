"""``python -m recon.photo_cache --save-cache FILE``: the photo library in one file.

For a machine without the Debian photo packages (a GPU box used for training): write the cache
where the packages are installed, copy it, and set ``BLURVID_PHOTO_CACHE=FILE`` there (read by
:func:`recon.photos.default_photos`).
"""

from __future__ import annotations

from collections.abc import Sequence

from recon.photos import PhotoLibrary


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m recon.photo_cache --save-cache FILE``: write the photo library to one file."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m recon.photo_cache",
                                description="Write the photo library of the synthetic training "
                                            "scenes to one file.")
    p.add_argument("--save-cache", metavar="FILE", required=True,
                   help="write the package photo library (see PhotoLibrary.save_cache) to FILE; "
                        "set BLURVID_PHOTO_CACHE=FILE where the packages are not installed")
    args = p.parse_args(argv)
    lib = PhotoLibrary(None)
    path = lib.save_cache(args.save_cache)
    print(f"wrote {lib!r} to {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
