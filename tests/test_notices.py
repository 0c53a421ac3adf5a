"""The per-call warning collector behind ``Explanation.warnings``."""
import threading

from vexplain.core.notices import collecting, warn


def test_warn_collects_once_per_call_and_nothing_outside():
    warn("ignored: no call in progress")
    with collecting() as outer:
        warn("scores are  not finite")
        warn("scores are not finite")
        with collecting() as inner:
            warn("inner only")
        warn("second")
    assert outer == ["scores are not finite", "second"]
    assert inner == ["inner only"]


def test_threads_keep_their_own_lines():
    seen: dict[int, list[str]] = {}
    barrier = threading.Barrier(4)

    def work(i: int) -> None:
        with collecting() as lines:
            barrier.wait()
            warn(f"thread {i}")
            barrier.wait()
        seen[i] = lines

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {i: [f"thread {i}"] for i in range(4)}
