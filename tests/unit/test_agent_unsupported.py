"""Which CRIU dump refusals name something the job holds (mosix.agent.unsupported), and what users read.

Each log line was written by CRIU 4.1.1 (the version runc drives here) dumping a process that held the
feature, on this project's test machine; the source file and line are in the line itself.
"""

from __future__ import annotations

import pathlib

import pytest

from mosix.agent import errors, unsupported

# Written by every dump on this machine (criu runs without CAP_SYS_RESOURCE's headroom): never a reason.
NOISE = "(00.041863) Error (criu/util.c:1533): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted\n"
FAILED = "(00.051291) Error (criu/cr-dump.c:2111): Dumping FAILED.\n"

REFUSALS = [
    ("(00.01) Error (criu/files-ext.c:94): Can't dump file 7 of that type [600] (anon anon_inode:[io_uring])",
     "fd 7 is anon_inode:[io_uring]"),
    ("(00.037359) Error (criu/sk-inet.c:191): inet: Connected TCP socket, consider using --tcp-established option.",
     "a connected TCP socket"),
    ("(00.053853) Error (criu/sk-inet.c:176): inet: In-flight connection (l) for 20dd6b\n"
     "(00.053854) Error (criu/sk-inet.c:177): inet: In-flight connections can be ignored with the "
     "--skip-in-flight option.",
     "a TCP connection not yet accepted"),
    ("(00.054160) Error (criu/sk-inet.c:130): inet: Unsupported proto 262 for socket 20d9a8",
     "a socket of IP protocol 262"),
    ("(00.050314) Error (criu/sk-inet.c:495): inet: Can't dump corked dgram socket 20d9e0",
     "a corked UDP socket"),
    ("(00.051236) Error (criu/sk-unix.c:874): unix: External socket is used. Consider using --ext-unix-sk option.",
     "a unix socket connected outside the job"),
    ("(00.061277) Error (criu/sk-queue.c:144): skqueue: Control messages in queue, not supported",
     "control messages queued on a unix socket"),
    ("(00.034191) Error (criu/pipes.c:490): The packetized mode for pipes is not supported yet",
     "a packet-mode (O_DIRECT) pipe"),
    ("(00.075411) Error (criu/namespaces.c:460): Can't dump nested uts namespace for 17682\n"
     "(00.075413) Error (criu/namespaces.c:721): Can't make utsns id",
     "a nested uts namespace"),
]


@pytest.mark.parametrize(("lines", "reason"), REFUSALS, ids=[r for _, r in REFUSALS])
def test_each_refusal_criu_writes_names_the_feature(lines: str, reason: str) -> None:
    assert unsupported.reason_in(NOISE + lines + "\n" + FAILED) == reason


MACHINE_FAILURES = [
    # CRIU 4.1.1 on Linux >= 6.16 cannot read SO_PASSCRED of an inet socket: a newer CRIU can, elsewhere.
    "(00.058337) Error (criu/sockets.c:628): sockets: Can't get 1:16 opt: Operation not supported\n"
    "(00.058365) Error (criu/cr-dump.c:1681): Dump files (pid: 17167) failed with -1\n",
    "(00.02) Error (criu/net.c:2540): Can't restore iptables dump - no legacy version present\n",
    # what a restore log says of a TCP connection in the image is not a dump's refusal
    "(00.01) Error (criu/sk-inet.c:903): inet: Connected TCP socket in image\n",
    "",
]


@pytest.mark.parametrize("log", MACHINE_FAILURES)
def test_a_failure_of_the_machine_names_no_feature(log: str) -> None:
    assert unsupported.reason_in(NOISE + log + FAILED) is None


def test_the_first_refusal_in_the_log_is_the_reason() -> None:
    tcp, unix = REFUSALS[1][0], REFUSALS[5][0]
    assert unsupported.reason_in(f"{unix}\n{tcp}\n") == "a unix socket connected outside the job"


def test_classify_reads_the_dump_log(tmp_path: pathlib.Path) -> None:
    log = tmp_path / "dump.log"
    log.write_text(NOISE + REFUSALS[1][0] + "\n" + FAILED)
    refused = unsupported.classify(errors.CheckpointError("runc checkpoint failed"), log)
    assert isinstance(refused, unsupported.Unsupported)
    assert str(refused) == "cannot be checkpointed: a connected TCP socket"
    other = errors.CheckpointError("disk full")
    assert unsupported.classify(other, tmp_path / "missing.log") is other
