"""Ctrl-C ends the run wherever it lands, in both flavours: in a task's code, in an asyncio
callback run by the loop's machinery, in an asyncio task nobody supervises.

Each case runs in a child process (a KeyboardInterrupt in this one would stop pytest). The
child raises SIGINT itself at the chosen spot, so the place is exact, not a matter of timing;
trio's handler then decides where the KeyboardInterrupt goes. Before the fix, one landing in
trio-asyncio's loop ended the loop with asyncio tasks still awaited and the run hung.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent(
    """
    import asyncio, logging, signal, sys
    import trio, taskrunner

    FLAVOR, WHERE = sys.argv[1], sys.argv[2]
    logging.basicConfig(format="%(name)s: %(message)s")

    def ctrl_c():
        signal.raise_signal(signal.SIGINT)  # the handler runs right here, as a real Ctrl-C

    async def in_asyncio():
        # Runs on taskrunner's asyncio loop, from whichever flavour called it.
        if WHERE == "loop_callback":
            asyncio.get_running_loop().call_soon(ctrl_c)
        elif WHERE == "unsupervised_asyncio_task":
            async def stray():
                ctrl_c()
            asyncio.ensure_future(stray())
        elif WHERE == "raised_by_unsupervised_asyncio_task":
            async def stray():
                raise KeyboardInterrupt  # the code's own use of it, no signal
            asyncio.ensure_future(stray())
        await asyncio.sleep(30)

    async def job():
        if WHERE == "task_code":
            await trio.sleep(0.01) if FLAVOR == "trio" else await asyncio.sleep(0.01)
            ctrl_c()
        if FLAVOR == "trio":
            await taskrunner.run_in_asyncio(in_asyncio)
        else:
            await in_asyncio()
        await (trio.sleep(30) if FLAVOR == "trio" else asyncio.sleep(30))

    async def bystander():
        await (trio.sleep(30) if FLAVOR == "trio" else asyncio.sleep(30))

    async def main():
        async with taskrunner.open_supervisor(flavor=FLAVOR) as sup:
            tasks = [sup.create_task(bystander(), name="bystander"),
                     sup.create_task(job(), name="job")]
            await trio.sleep(1 if WHERE.startswith("raised") else 30)
            print(*(t.state.name for t in tasks))
            sup.cancel_all_tasks()
        print("not interrupted")

    try:
        trio.run(main)
    except KeyboardInterrupt:
        print("KeyboardInterrupt")
    except BaseExceptionGroup as group:
        print("KeyboardInterrupt" if group.subgroup(KeyboardInterrupt) else repr(group))
    """
)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("where", ["task_code", "loop_callback", "unsupervised_asyncio_task"])
def test_ctrl_c_anywhere_ends_the_run(flavor: str, where: str) -> None:
    try:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, flavor, where],
            capture_output=True,
            text=True,
            timeout=20,
            # Started in the background by a non-interactive shell, SIGINT would be ignored.
            preexec_fn=_default_sigint,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the run hung after Ctrl-C ({where}, {flavor}): {exc.stderr!r}")
    assert done.stdout.strip() == "KeyboardInterrupt", (done.stdout, done.stderr)
    assert done.returncode == 0, done.stderr


def test_keyboard_interrupt_raised_by_an_unsupervised_asyncio_task_is_logged(flavor: str) -> None:
    """Code raising KeyboardInterrupt itself in an asyncio task nobody awaits: asyncio lets it
    out of the loop, which in trio-asyncio would end the loop and hang the run (trio-asyncio
    issue 118). It is logged, and the run and its tasks go on."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD, flavor, "raised_by_unsupervised_asyncio_task"],
        capture_output=True,
        text=True,
        timeout=20,
        preexec_fn=_default_sigint,
    )
    assert done.stdout.split("\n")[:2] == ["RUNNING RUNNING", "not interrupted"], done
    assert "KeyboardInterrupt escaped an asyncio callback; the loop goes on" in done.stderr
