"""The image cache and the runc wrapper, against the real umoci and runc."""

from __future__ import annotations

import pathlib

import pytest

from mosix.agent import errors, images, runc, testimage


@pytest.mark.root
def test_testload_image_is_built_once_and_content_addressed(image_cache: images.Cache) -> None:
    first = image_cache.resolve(testimage.REFERENCE)
    again = image_cache.resolve(testimage.REFERENCE)
    assert first == again
    assert first.digest.startswith("sha256:")
    assert first.digest.split(":")[1] in str(first.rootfs)
    assert (first.rootfs / "bin/busybox").is_file()
    assert (first.rootfs / "bin/sh").is_symlink()
    assert (first.rootfs / "usr/local/bin/testload").read_bytes().startswith(b"\x7fELF")  # static, built here


@pytest.mark.root
def test_oci_layout_reference_unpacks_to_the_same_entry(image_cache: images.Cache) -> None:
    layout = image_cache.testload_layout()
    by_layout = image_cache.resolve(f"oci:{layout}:{testimage.TAG}")
    assert by_layout.rootfs == image_cache.resolve(testimage.REFERENCE).rootfs


def test_unknown_references_and_tags_are_refused(tmp_path: pathlib.Path) -> None:
    cache = images.Cache(tmp_path)
    with pytest.raises(errors.ImageError, match="unsupported image reference"):
        cache.resolve("not a reference")
    with pytest.raises(errors.ImageError, match="not an OCI image layout"):
        cache.resolve(f"oci:{tmp_path}:x")


@pytest.mark.root
def test_runc_missing_binary_is_not_runnable(tmp_path: pathlib.Path) -> None:
    with pytest.raises(runc.NotRunnable):
        runc.Runtime(tmp_path, binary=str(tmp_path / "no-such-runc")).list()


@pytest.mark.root
def test_runc_refusal_keeps_its_stderr(tmp_path: pathlib.Path) -> None:
    rt = runc.Runtime(tmp_path / "runc")
    assert rt.list() == []
    with pytest.raises(runc.Refused) as info:
        rt.state("no-such-container")
    assert info.value.returncode != 0
    assert "no-such-container" in info.value.stderr or "not exist" in info.value.stderr
