"""Deferred imports: faster-whisper without PyAV loaded, PyAV loaded on first use."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_faster_whisper_imports_without_loading_pyav_until_it_is_used() -> None:
    out = run(
        """
        import sys
        from bellad.lazyimport import _Deferred, defer

        def is_loaded(name):  # the real module, not its stand-in
            return name in sys.modules and not isinstance(sys.modules[name], _Deferred)

        assert defer("av")
        assert not defer("av")  # already there: nothing to do
        import faster_whisper
        print("after faster_whisper:", is_loaded("av"), "av._core" in sys.modules)
        import av
        print("after import av:", is_loaded("av"))
        print("version:", isinstance(av.__version__, str))
        print("loaded:", is_loaded("av"), "av._core" in sys.modules)
        from faster_whisper.audio import av as seen_by_faster_whisper
        print("forwards:", seen_by_faster_whisper.open is av.open)
        """
    )
    assert out.splitlines() == [
        "after faster_whisper: False False",
        "after import av: False",
        "version: True",
        "loaded: True True",
        "forwards: True",
    ]


def test_a_module_that_does_not_exist_is_left_alone() -> None:
    from bellad.lazyimport import defer

    assert not defer("bellad_no_such_module")
    assert "bellad_no_such_module" not in sys.modules
