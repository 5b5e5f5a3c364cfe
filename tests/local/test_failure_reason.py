"""An endpoint's FailureReason from its container log: the cause first, then a short clean tail."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from dropship.local.failure_reason import (
    FAILURE_REASON_MAX,
    cause,
    failure_reason,
    read_lines,
    render,
    start_marker,
)

EXITED = (
    "The primary container for production variant AllTraffic exited (exit code 3) before passing the ping health check."
)


def _json(message: str, **fields: object) -> str:
    return json.dumps({"time": "2026-01-01T00:00:00.000Z", "level": "info", "message": message, **fields})


def _log(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "endpoint.log"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_model_load_failed_line_leads_and_its_repetition_is_not_in_the_tail(tmp_path: Path) -> None:
    reason = "model_fn in /opt/ml/model/code/inference.py failed: RuntimeError: weights.bin is missing"
    log = _log(
        tmp_path,
        start_marker("/venv/bin/python container/serve", "2026-01-01T00:00:00+00:00"),
        _json("starting", event="starting"),
        _json(reason, level="critical", event="model_load_failed", exception="Traceback ...\nRuntimeError: x"),
        _json("Worker (pid:12) exited with code 3"),
        _json(f"stopped: {reason}", level="critical", event="model_load_failed"),
    )
    text = failure_reason(EXITED, log)
    assert text.startswith(reason + "\n" + EXITED)
    assert text.count("weights.bin is missing") == 1
    assert text.endswith("starting\nWorker (pid:12) exited with code 3")
    assert "--- " not in text  # the stack's own start marker
    assert str(log) in text


def test_without_one_the_last_traceback_s_exception_line_leads(tmp_path: Path) -> None:
    log = _log(
        tmp_path,
        "loading",
        "Traceback (most recent call last):",
        '  File "inference.py", line 1, in <module>',
        "KeyError: 'first'",
        "",
        "During handling of the above exception, another exception occurred:",
        "",
        "Traceback (most recent call last):",
        '  File "inference.py", line 3, in <module>',
        "    import featurizer",
        "ModuleNotFoundError: No module named 'featurizer'",
        "exiting",
    )
    assert cause(read_lines(log)) == "ModuleNotFoundError: No module named 'featurizer'"
    assert failure_reason(EXITED, log).startswith("ModuleNotFoundError: No module named 'featurizer'\n")


def test_a_structured_exception_counts_as_a_traceback(tmp_path: Path) -> None:
    trace = 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: bad weights'
    log = _log(tmp_path, _json("something went wrong", level="error", exception=trace))
    assert cause(read_lines(log)) == "ValueError: bad weights"


def test_no_cause_leaves_the_message_first(tmp_path: Path) -> None:
    log = _log(tmp_path, "loading model", "still loading")
    assert failure_reason("did not pass the ping health check within 120 seconds.", log).startswith("did not pass")
    assert failure_reason(EXITED, tmp_path / "missing.log").startswith(EXITED)


def test_colour_codes_and_control_characters_are_removed(tmp_path: Path) -> None:
    log = _log(tmp_path, "\x1b[31mERROR\x1b[0m loading\x07 failed\r", "\x00ok")
    assert read_lines(log) == ["ERROR loading failed", "ok"]
    assert render(_json("a\x1b[1m bold\x1b[0m\nmove")) == "a bold move"


def test_only_what_this_start_wrote_is_read(tmp_path: Path) -> None:
    log = _log(tmp_path, _json("old failure", event="model_load_failed"), "old line")
    start = log.stat().st_size
    with log.open("a") as fh:
        fh.write("new line\n")
    assert failure_reason(EXITED, log, start).startswith(EXITED)
    assert "old" not in failure_reason(EXITED, log, start)


_LOG_LINE = st.one_of(
    st.text(max_size=400),
    st.builds(lambda m: _json(m), st.text(max_size=600)),
    st.builds(lambda m: _json(m, event="model_load_failed"), st.text(max_size=2000)),
    st.just("Traceback (most recent call last):"),
    st.builds(lambda m: f"ValueError: {m}", st.text(max_size=300)),
)


@settings(max_examples=150, deadline=None)
@given(lines=st.lists(_LOG_LINE, max_size=40), message=st.sampled_from([EXITED, "did not pass the ping health check."]))
def test_a_reason_is_within_the_limit_clean_and_cut_only_between_words(lines: list[str], message: str) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        log = Path(scratch) / "endpoint.log"
        log.write_text("\n".join(lines), encoding="utf-8", errors="replace")
        text = failure_reason(message, log)
        whole = [render(line) for line in read_lines(log)]
    assert len(text) <= FAILURE_REASON_MAX
    assert message in text
    assert not any(ord(c) < 32 and c != "\n" for c in text)
    assert "\x1b" not in text and "\x7f" not in text
    tail = text.split(" Last lines of its log (", 1)[1].split("\n")[1:]
    for line in tail:  # whole lines of the log, or one shortened between words (unless it has none)
        if line in whole:
            continue
        assert line.endswith("…"), line
        kept = line[:-1]
        between_words = [w for w in whole if w.startswith(kept) and w[len(kept) : len(kept) + 1].isspace()]
        assert between_words or " " not in kept[len(kept) // 2 :], line
