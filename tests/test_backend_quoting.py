"""No value of a job can add a line or a directive to what a backend writes, and every argv comes
out exactly as given: the shell script (SLURM, local) is run for real and checked by ``bash -n``
and sbatch's own directive rule; the HTCondor submit description is read back with HTCondor's
parser (``htcondor2.Submit``) and the arguments split by HTCondor's rules (tests/condor/syntax).
"""
from __future__ import annotations

import json
import subprocess
import sys

import htcondor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobforms.backends import BatchJob, HTCondorBackend, JobRefused, Resources
from jobforms.backends.htcondor import MACRO
from jobforms.backends.script import shell_script
from tests.condor.syntax import parse_arguments, parse_environment

PRINT_ARGV_AND_ENV = ("import json, os, sys; print(json.dumps([sys.argv[1:], "
                      "{k: v for k, v in os.environ.items() if k.startswith('NH_')}]))")

LOOKALIKES = ["#SBATCH --time=1", "\n#SBATCH --mem=1\n", "#SBATCH", "+JobStatus = 4",
              "\nqueue\n", "queue", "executable = /bin/rm", "'", '"', "''", '""', "'\"'", "$(id)",
              "`id`", "$HOME", "${HOME}", "\\", "\\\n", "a\\", "a b", "", " ", "\t", "\r\n", "%j",
              "%%", "$$(Memory)", "$(DOLLAR)", "$ENV(HOME)", "$[1+1]", "$", "$$", "ü", "😀",
              "\x7f", "\x0b\x0c", "\u2028", "--", "-c", ";rm -rf /", "|", "&&", "*", "~",
              "{a,b}", "!!", "# comment", "a=b", "#!/bin/sh", "EOF", "@=end"]
TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\0"), max_size=40)
ARG = st.one_of(st.sampled_from(LOOKALIKES), TEXT,
                st.builds(lambda a, b, c: a + b + c, TEXT, st.sampled_from(LOOKALIKES), TEXT))
HUGE = st.integers(20_000, 100_000).map(lambda n: ("x'\"$ #\n\\" * n)[:n])
ARGS = st.lists(ARG, max_size=8) | st.tuples(ARG, HUGE).map(list)
ENV = st.dictionaries(st.from_regex(r"NH_[A-Z0-9_]{1,8}", fullmatch=True), ARG, max_size=4)
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def job(argv, env=None, **changes) -> BatchJob:
    values = dict(job_id="fuzz-1", argv=argv, workdir="/tmp", stdout="/tmp/out",
                  stderr="/tmp/err", account="nobody", env=env or {})
    return BatchJob(**{**values, **changes})


def sbatch_directives(script: str) -> list[str]:
    """What sbatch would read as options: ``#SBATCH`` lines before the first command line."""
    found = []
    for line in script.split("\n")[1:]:
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            break
        if stripped.startswith("#SBATCH"):
            found.append(line)
    return found


@FUZZ
@given(args=ARGS, env=ENV)
def test_the_job_script_runs_exactly_the_given_argv_and_environment_and_has_no_directive(
        args, env, tmp_path_factory):
    script = shell_script(job([sys.executable, "-c", PRINT_ARGV_AND_ENV, *args], env))
    assert sbatch_directives(script) == []
    assert script.split("\n")[1].startswith(": ")   # a command right after the shebang
    path = tmp_path_factory.mktemp("script") / "job.sh"
    path.write_text(script)
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0
    ran = subprocess.run(["/bin/sh", str(path)], capture_output=True, text=True, env={})
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout) == [args, env]


def can_carry(value: str) -> bool:
    """What HTCondor's submit language can carry inside a quoted list (see the backend)."""
    return "\n" not in value and "\r" not in value and not MACRO.search(value)


@FUZZ
@given(args=ARGS, env=ENV)
def test_the_submit_description_reads_back_as_exactly_the_argv_or_the_job_is_refused(args, env):
    backend = HTCondorBackend(user_log="")
    the_job = job(["/usr/bin/printf", *args], env, requirements='Machine == "node1"')
    if not all(can_carry(v) for v in [*args, *env.values()]):
        with pytest.raises(JobRefused) as refused:
            backend.job_script(the_job)
        assert refused.value.field.startswith(("argv[", "env["))
        return
    text = backend.job_script(the_job)
    read = htcondor2.Submit(text)
    expected = {"universe", "executable", "transfer_executable", "arguments", "initialdir",
                "output", "error", "request_cpus", "request_memory", "allowed_execute_duration",
                "batch_name", "my.nebulahubjobid", "requirements"} | ({"environment"} if env
                                                                     else set())
    assert {k.lower() for k in read.keys()} == expected      # no command added, none lost
    assert read.getQArgs() in ("", "1")                      # one job, no itemdata
    assert read.expand("executable") == "/usr/bin/printf"
    assert parse_arguments(read.expand("arguments")) == args
    if env:
        assert parse_environment(read.expand("environment")) == env
    assert read["MY.NebulaHubJobId"] == '"fuzz-1"'


def test_a_program_looked_up_on_path_runs_through_env_with_its_name_as_first_argument():
    read = htcondor2.Submit(HTCondorBackend(user_log="").job_script(job(["python3", "-V"])))
    assert read["executable"] == "/usr/bin/env"
    assert parse_arguments(read.expand("arguments")) == ["python3", "-V"]


@pytest.mark.parametrize("field, value, words", [
    ("stdout", "/tmp/out\nqueue", "line break"),
    ("stdout", "/tmp/out\\", "backslash"),
    ("workdir", "/tmp/$(Owner)", "macros"),
    ("stderr", "/tmp/err ", "blanks"),
    ("requirements", "true\n+JobStatus = 4", "line break"),
])
def test_values_htcondor_would_read_differently_are_refused_with_a_sentence(field, value, words):
    with pytest.raises(JobRefused) as refused:
        HTCondorBackend().job_script(job(["/bin/true"], **{field: value}))
    assert refused.value.field == field
    assert words in str(refused.value)


@pytest.mark.parametrize("kwargs, field", [
    ({"argv": []}, "argv"),
    ({"argv": ["/bin/echo", "a\0b"]}, "argv[1]"),
    ({"argv": ["-rf"]}, "argv[0]"),
    ({"argv": ["/bin/echo", "\ud800"]}, "argv[1]"),
    ({"workdir": "relative"}, "workdir"),
    ({"env": {"A B": "x"}}, "env"),
    ({"env": {"A": "x\0"}}, "env[A]"),
    ({"account": "alice; rm"}, "account"),
    ({"job_id": "../../etc"}, "job_id"),
    ({"resources": "lots"}, "resources"),
])
def test_a_job_the_backends_cannot_run_as_given_is_refused_naming_the_field(kwargs, field):
    values = dict(job_id="j1", argv=["/bin/true"], workdir="/tmp", stdout="/tmp/o",
                  stderr="/tmp/e", account="alice")
    values.update(kwargs)
    with pytest.raises(JobRefused) as refused:
        BatchJob(**values)
    assert refused.value.field == field


def test_resources_are_whole_numbers_of_at_least_one():
    with pytest.raises(JobRefused) as refused:
        Resources(cores=0)
    assert refused.value.field == "resources.cores"
    with pytest.raises(JobRefused):
        Resources(memory_mb=True)
