"""Every ```python / ```bash / ```console block of README.md and docs/ runs as written, and what a block says it
prints is checked against what it prints.

An HTML comment on the line before a fence says how a block runs — `<!-- run: quick | serve [alternatives] |
parallel | skip reason="..." [given=NAME,...] -->`, none for the slow suite; docs/development.md ("Examples that
run") describes the convention. The quick suite checks every block's marker, compiles every Python block and
parses every `rnnzoo` line with the CLI's own parser; the slow suite runs each page's blocks in order in one
folder, as a reader working down the page in one shell would, on the test's own Mosquitto / nats-server.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from streaming.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
RUN_LANGS = {"python": "python", "bash": "shell", "sh": "shell", "shell": "shell", "console": "shell"}
MODES = {"quick", "slow", "serve", "parallel", "skip"}
FENCE = re.compile(r"^```(\S*)\s*$")
MARK = re.compile(r"^<!--\s*run:\s*(.*?)\s*-->\s*$")
EXPECT = re.compile(r"\s*#\s*→\s*(.*?)\s*$")
# The commands that keep running until stopped: started in the background by a `serve` block.
SERVICE = re.compile(r"^(?:\w+=\S+\s+)*(?:rnnzoo serve\b|rnnzoo worker\b(?!.*--print-mapping)|nats-server\b)")
READY = {"rnnzoo serve": "subscribed to", "rnnzoo worker": "joined group", "nats-server": "Server is ready"}
FOREGROUND_TIMEOUT_S = 1800


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # the opening fence's line, 1-based
    lang: str
    text: str
    mode: str = "slow"
    alternatives: bool = False
    reason: str = ""
    given: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def kind(self) -> str:
        return RUN_LANGS[self.lang]


def _marker(comment: str, where: str) -> dict:
    words = shlex.split(comment)
    if not words or words[0] not in MODES:
        raise ValueError(f"{where}: run marker must start with one of {sorted(MODES)}: {comment!r}")
    out: dict = {"mode": words[0]}
    for w in words[1:]:
        if w == "alternatives":
            out["alternatives"] = True
        elif w.startswith("reason="):
            out["reason"] = w.removeprefix("reason=")
        elif w.startswith("given="):
            out["given"] = tuple(w.removeprefix("given=").split(","))
        else:
            raise ValueError(f"{where}: unknown word in run marker: {w!r}")
    return out


def page_blocks(page: Path) -> list[Block]:
    """The page's fenced blocks of a language that runs, each with its marker's settings."""
    lines = page.read_text().splitlines()
    found, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, lang = i, m.group(1)
        i += 1
        while not lines[i].startswith("```"):
            i += 1
        text = "\n".join(lines[start + 1 : i]) + "\n"
        i += 1
        if lang not in RUN_LANGS:
            continue
        before = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        mark = MARK.match(before.strip())
        where = f"{page.relative_to(ROOT)}:{start + 1}"
        found.append(Block(page, start + 1, lang, text, **(_marker(mark.group(1), where) if mark else {})))
    return found


BLOCKS = [b for page in PAGES for b in page_blocks(page)]


# ---------------------------------------------------------------------------------------------------- commands


@dataclass
class Command:
    line: int  # line in the page
    text: str
    expect: list[str] = field(default_factory=list)

    @property
    def service(self) -> str | None:
        m = SERVICE.match(self.text)
        return next((k for k in READY if k in m.group(0)), None) if m else None


def commands(block: Block) -> list[Command]:
    """The block's shell commands (backslash continuations joined), each with the output it says it prints."""
    out: list[Command] = []
    raw = block.text.splitlines()
    console = block.lang == "console"
    i = 0
    while i < len(raw):
        line, number = raw[i], block.line + 1 + i
        i += 1
        if console and not line.startswith("$ "):
            if line.strip() and out:
                out[-1].expect.append(line.strip())
            continue
        line = line.removeprefix("$ ") if console else line
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            m = EXPECT.match(stripped)
            if m and out:
                out[-1].expect.append(m.group(1))
            continue
        while line.endswith("\\") and i < len(raw):
            line = line[:-1] + " " + raw[i].strip()
            i += 1
        cmd = Command(number, line.strip())
        m = re.search(r"\s#\s*→\s*(.*?)\s*$", cmd.text)
        if m:
            cmd.expect.append(m.group(1))
        out.append(cmd)
    return out


def _words(cmd: Command) -> list[str]:
    """The command's words after any VAR=value prefixes and `export`."""
    words = shlex.split(cmd.text, comments=True)
    while words and re.match(r"^\w+=", words[0]):
        words = words[1:]
    return words


# ---------------------------------------------------------------------------------------------------- python


def instrument(source: str, where: str) -> str:
    """The block's source with every `EXPR  # → TEXT` line turned into a check of EXPR's value against TEXT."""
    out = []
    for n, line in enumerate(source.splitlines(), 1):
        m = re.match(r"^(?P<code>\S.*?)\s+#\s*→\s*(?P<text>.*?)\s*$", line)
        if m:
            tree = ast.parse(m.group("code"))
            (stmt,) = tree.body
            assert isinstance(stmt, ast.Expr), f"{where}: `# →` after a statement that is not an expression"
            expr = stmt.value
            shown = m.group("code")
            if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name) and expr.func.id == "print":
                (arg,) = expr.args
                shown = ast.unparse(arg)
                line = f"print(_doc_expect({shown}, {m.group('text')!r}, {where!r} + ':{n}'))"
            else:
                line = f"_doc_expect({shown}, {m.group('text')!r}, {where!r} + ':{n}')"
        out.append(line)
    return "\n".join(out) + "\n"


EXPECT_HELPER = '''
def _doc_expect(value, text, where):
    """The value a doc says an expression has: a quoted string, a number at the precision shown, or a repr."""
    import re as _re

    quoted = _re.match(r"""(["'])(.*?)\\1""", text)
    number = _re.match(r"[-+]?[\\d,]*\\d(?:\\.(\\d+))?(?:e[-+]?\\d+)?(?![\\w.])", text)
    if quoted:
        ok, want = str(value) == quoted.group(2), quoted.group(2)
    elif number:
        want = number.group(0).replace(",", "")
        ok = f"{float(value):.{len(number.group(1) or '')}f}" == f"{float(want):.{len(number.group(1) or '')}f}"
    else:
        ok, want = repr(value) == text, text
    assert ok, f"{where}: the docs say {want!r}, the code gives {value!r}"
    return value
'''


# ---------------------------------------------------------------------------------------------------- inputs


def _activity_readings(session: Session) -> str:
    return "import zoo\n\nreadings = zoo.test_data('activity-gru-causal')[0][0]  # test recording 0\n"


def _steps_csv(session: Session) -> None:
    import numpy as np

    import zoo

    np.savetxt(session.workdir / "steps.csv", zoo.test_data("activity-gru-causal")[0][0], delimiter=",")


def _patient_csv(session: Session) -> None:
    import numpy as np

    import zoo

    visits = zoo.test_data("pbc-visits-gru")[0][0]
    n = len(visits)
    while n > 1 and np.array_equal(visits[n - 1], visits[n - 2]):  # end padding repeats the last real visit
        n -= 1
    np.savetxt(session.workdir / "patient.csv", visits[:n], delimiter=",", header="test patient 0")


def _tweets_txt(session: Session) -> None:
    (session.workdir / "tweets.txt").write_text(
        "worst flight ever, they lost my bag\nI love this, what a wonderful day\nmy flight leaves at noon\n"
    )


def _wav(name: str, words: str) -> Callable[[Session], None]:
    def make(session: Session) -> None:
        subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(session.workdir / name), words], check=True)

    return make


def _serve_toml(name: str) -> Callable[[Session], None]:
    """The service configuration of docs/streaming.md, with the test's Mosquitto as its broker."""

    def make(session: Session) -> None:
        doc = (ROOT / "docs" / "streaming.md").read_text()
        (block,) = re.findall(r"```toml\n(.*?)```", doc, flags=re.S)
        config = tomllib.loads(block)
        config["broker"] = {"url": session.mqtt_url}
        config["service"]["metrics_port"] = 0
        config["service"]["snapshot_path"] = str(session.workdir / "state" / "snapshot.npz")
        session.write_toml(name, config)

    return make


def _nats_conf(session: Session) -> None:
    from streaming.jetstream import Layout, mapping_config

    (session.workdir / "nats-server.conf").write_text(
        f"listen: 127.0.0.1:{session.nats_port}\n"
        "server_name: rnnzoo-docs\n"  # nats-server's MQTT listener requires one
        f'jetstream {{ store_dir: "{session.workdir / "js"}" }}\n'
        f"mqtt {{ listen: 127.0.0.1:{free_port()} }}\n"
        f"{mapping_config(Layout(8))}\n"
    )


def _onnx_export(session: Session) -> None:
    session.shell(Command(0, "rnnzoo export activity-gru-causal --format onnx"))


def _ui_token(session: Session) -> None:
    session.env["RNNZOO_UI_TOKEN"] = "doc-block-token"


def _data_parallel_names(session: Session) -> str:
    """What docs/training-devices.md's Python block takes as given: two (virtual) devices and a model to fit."""
    return (
        "import os\n\n"
        "os.environ.update(KERAS_BACKEND='jax', XLA_FLAGS='--xla_force_host_platform_device_count=2')\n"
        "import keras\n"
        "import numpy as np\n\n"
        "import zoo\n"
        "import zoo.training\n\n"
        "x, labels = zoo.test_data('activity-gru-causal')\n"
        "y = np.repeat(labels[:, None], x.shape[1], axis=1)\n"
        "x_val, y_val, w, cw = x[:8], y[:8], None, None\n"
        "devices, batch_size, epochs, seed, callbacks = 2, 8, 1, 0, []\n\n\n"
        "def build_and_compile():\n"
        "    model = keras.Sequential([keras.Input((None, 6)), keras.layers.GRU(8, return_sequences=True),\n"
        "                              keras.layers.Dense(4, activation='softmax')])\n"
        "    model.compile('adam', 'sparse_categorical_crossentropy')\n"
        "    return model\n\n\n"
    )


# name -> maker: a file or environment variable made in the session's folder, or Python source (returned) that
# runs before the block.
GIVEN: dict[str, Callable[[Session], str | None]] = {
    "readings": _activity_readings,
    "steps.csv": _steps_csv,
    "patient.csv": _patient_csv,
    "tweets.txt": _tweets_txt,
    "talk.wav": _wav("talk.wav", "one two seven three, then seven again"),
    "more.wav": _wav("more.wav", "no"),
    "serve.toml": _serve_toml("serve.toml"),
    "service.toml": _serve_toml("service.toml"),
    "nats-server.conf": _nats_conf,
    "exports": _onnx_export,
    "RNNZOO_UI_TOKEN": _ui_token,
    "data-parallel-names": _data_parallel_names,
}


# ---------------------------------------------------------------------------------------------------- a session


class Session:
    """One reader working down one page: a folder, an environment, brokers of the test's own, and the services
    the page's blocks started."""

    def __init__(self, workdir: Path, mqtt_url: str | None, nats_url: str | None, nats_port: int):
        self.workdir = workdir
        self.mqtt_url = mqtt_url
        self.nats_url = nats_url
        self.nats_port = nats_port
        self.env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
        self.env["PYTHONUNBUFFERED"] = "1"
        self.services: list[tuple[Command, subprocess.Popen, Path]] = []
        (workdir / "tmp").mkdir(parents=True, exist_ok=True)
        (workdir / "benchmarks" / "results").mkdir(parents=True, exist_ok=True)

    def write_toml(self, name: str, config: dict) -> None:
        def value(v: object) -> str:
            if isinstance(v, bool):
                return "true" if v else "false"
            if isinstance(v, str):
                return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
            if isinstance(v, list):
                return "[" + ", ".join(value(x) for x in v) + "]"
            return str(v)

        out = []
        for table, body in config.items():
            rows = body if isinstance(body, list) else [body]
            for row in rows:
                out.append(f"[[{table}]]" if isinstance(body, list) else f"[{table}]")
                subtables = {k: v for k, v in row.items() if isinstance(v, dict)}
                out += [f"{k} = {value(v)}" for k, v in row.items() if k not in subtables]
                for k, sub in subtables.items():
                    out.append(f"[{table}.{k}]")
                    out += [f"{kk} = {value(vv)}" for kk, vv in sub.items()]
        (self.workdir / name).write_text("\n".join(out) + "\n")

    def localise(self, text: str) -> str:
        """The command as it runs here: the test's brokers, free ports, private /tmp/, the repository's scripts."""
        if self.mqtt_url:
            text = text.replace("mqtt://127.0.0.1:1883", self.mqtt_url)
            if re.search(r"\brnnzoo (serve|simulate)\b", text) and not re.search(r"--broker|--config", text):
                text = re.sub(r"\brnnzoo (serve|simulate)\b", rf"rnnzoo \1 --broker {self.mqtt_url}", text)
        if self.nats_url:
            text = re.sub(r"nats://[\w.]+:4222", self.nats_url, text)
        text = re.sub(r"10\.0\.0\.1:1234", lambda m: f"127.0.0.1:{self.coordinator}", text)
        text = re.sub(r"(--ui|--metrics-port) \d{2,5}\b", lambda m: f"{m.group(1)} {free_port()}", text)
        text = re.sub(r"(?<![\w.])/tmp/", f"{self.workdir}/tmp/", text)
        text = text.replace(".venv/bin/", f"{BIN}/")
        return re.sub(r"\b(python|bash) (scripts|benchmarks)/", rf"\1 {ROOT}/\2/", text)

    @property
    def coordinator(self) -> int:
        if not hasattr(self, "_coordinator"):
            self._coordinator = free_port()
        return self._coordinator

    def prepare(self, block: Block) -> str:
        """Make what the block takes as given; returns the Python source to run before it."""
        prelude = ""
        for name in block.given:
            prelude += GIVEN[name](self) or ""
        return prelude

    # -- shell

    def _argv(self, cmd: Command) -> tuple[str, Path]:
        text, cwd = self.localise(cmd.text), self.workdir
        if re.search(r"-m pytest\b", text):  # this suite runs those tests itself: check they are there
            text, cwd = re.sub(r"\s+#.*$", "", text) + " --collect-only", ROOT
        return text, cwd

    def shell(self, cmd: Command) -> str:
        if cmd.text.startswith("export "):
            for word in shlex.split(cmd.text, comments=True)[1:]:
                key, _, value = word.partition("=")
                self.env[key] = self.localise(value)
            return ""
        text, cwd = self._argv(cmd)
        proc = subprocess.run(["bash", "-c", text], cwd=cwd, env=self.env, capture_output=True, text=True,
                              timeout=FOREGROUND_TIMEOUT_S)  # fmt: skip
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, (
            f"line {cmd.line}: `{cmd.text}` exited {proc.returncode}:\n{output[-3000:]}"
        )
        if "--collect-only" in text:
            collected = re.search(r"\b(\d+)(?:/\d+)? tests? collected", output)
            assert collected and int(collected.group(1)) > 0, f"line {cmd.line}: collected nothing:\n{output}"
        self._check_output(cmd, proc.stdout)
        return proc.stdout

    @staticmethod
    def _check_output(cmd: Command, stdout: str) -> None:
        flat = " ".join(stdout.split())
        for want in cmd.expect:
            assert " ".join(want.split()) in flat, (
                f"line {cmd.line}: the docs say it prints {want!r}:\n{stdout}"
            )

    def start(self, cmd: Command) -> None:
        text, cwd = self._argv(cmd)
        log = self.workdir / f"service-{cmd.line}.log"
        with log.open("w") as f:
            proc = subprocess.Popen(["bash", "-c", f"exec {text}"], cwd=cwd, env=self.env, stdout=f,
                                    stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        self.services.append((cmd, proc, log))
        ready, deadline = READY[cmd.service], time.monotonic() + 300
        while ready not in log.read_text():
            assert proc.poll() is None, f"line {cmd.line}: `{cmd.text}` ended:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, (
                f"line {cmd.line}: not ready in 300 s:\n{log.read_text()[-3000:]}"
            )
            time.sleep(0.2)
        time.sleep(0.5)  # the subscription's acknowledgement follows the log line

    def stop(self, which: str | None = None) -> None:
        """Stop the services (only those of one command with `which`) with SIGTERM: each must end cleanly."""
        keep = []
        for cmd, proc, log in reversed(self.services):  # the last started first: workers before their server
            if which is not None and cmd.service != which:
                keep.append((cmd, proc, log))
                continue
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
            output = log.read_text()
            clean = (0, 1) if cmd.service == "nats-server" else (0,)  # nats-server ends 1 on SIGTERM
            assert proc.returncode in clean, f"line {cmd.line}: exited {proc.returncode}:\n{output}"
            assert "Traceback" not in output, f"line {cmd.line}: `{cmd.text}` wrote a traceback:\n{output}"
        self.services = keep[::-1]

    def kill_all(self) -> None:
        for _, proc, _ in self.services:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        self.services = []

    def run_shell(self, block: Block) -> None:
        cmds = commands(block)
        if block.mode == "parallel":
            procs = []
            for cmd in cmds:
                text, cwd = self._argv(cmd)
                procs.append((cmd, subprocess.Popen(["bash", "-c", text], cwd=cwd, env=self.env, text=True,
                                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)))  # fmt: skip
            for cmd, proc in procs:
                out, _ = proc.communicate(timeout=FOREGROUND_TIMEOUT_S)
                assert proc.returncode == 0, (
                    f"line {cmd.line}: `{cmd.text}` exited {proc.returncode}:\n{out[-3000:]}"
                )
                self._check_output(cmd, out)
            return
        for cmd in cmds:
            if cmd.service:
                assert block.mode == "serve", f"{block.id}: starts a service; mark it <!-- run: serve -->"
                if block.alternatives:
                    self.stop(cmd.service)
                self.start(cmd)
            else:
                self.shell(cmd)

    # -- python

    def run_python(self, block: Block) -> None:
        source = self.prepare(block) + EXPECT_HELPER + instrument(block.text, block.id)
        script = self.workdir / f"block-{block.line}.py"
        script.write_text(source)
        proc = subprocess.run([sys.executable, str(script)], cwd=self.workdir, env=self.env, capture_output=True,
                              text=True, timeout=FOREGROUND_TIMEOUT_S)  # fmt: skip
        assert proc.returncode == 0, f"{block.id} failed:\n{(proc.stdout + proc.stderr)[-4000:]}"

    def run(self, block: Block) -> None:
        if block.kind == "python":
            self.run_python(block)
        else:
            self.prepare(block)
            self.run_shell(block)


# ---------------------------------------------------------------------------------------------------- quick


def test_blocks_are_found_and_marked() -> None:
    """Every block that runs has a marker the runner understands; a skip says why; a service is marked."""
    assert len(BLOCKS) >= 30 and {b.page.name for b in BLOCKS} >= {"README.md", "fit.md", "streaming.md"}
    for b in BLOCKS:
        if b.mode == "skip":
            assert len(b.reason) > 20, f"{b.id}: a skipped block says why"
        assert b.alternatives <= (b.mode == "serve"), f"{b.id}: `alternatives` is for serve blocks"
        assert set(b.given) <= set(GIVEN), f"{b.id}: unknown given {set(b.given) - set(GIVEN)}"
        if b.kind == "shell":
            services = [c for c in commands(b) if c.service]
            assert bool(services) <= (b.mode in ("serve", "skip")), f"{b.id}: starts a service: run: serve"
            assert bool(services) >= (b.mode == "serve"), f"{b.id}: marked serve but starts no service"


def test_readme_set_up_block_is_what_ci_runs() -> None:
    """The one skipped README block (it sets the machine up): .ci/run runs the set-up, then its test line."""
    (setup,) = [b for b in BLOCKS if b.page.name == "README.md" and b.mode == "skip"]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    lines = [re.sub(r"\s+#.*$", "", c.text) for c in commands(setup)]
    assert "bash scripts/setup.sh" in ci and lines[-1] in ci, lines


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.kind == "python"], ids=lambda b: b.id)
def test_python_block_compiles(block: Block) -> None:
    compile(EXPECT_HELPER + instrument(block.text, block.id), block.id, "exec")


def test_shell_commands_name_what_exists() -> None:
    """Every `rnnzoo` command line parses with the CLI's own parser, and every script or test it names exists."""
    from rnnzoo.cli import build_parser

    parser = build_parser()
    checked = 0
    for b in (b for b in BLOCKS if b.kind == "shell"):
        for cmd in commands(b):
            for part in re.split(r"\s*&&\s*", cmd.text):
                words = _words(Command(cmd.line, part))
                where = f"{b.id} line {cmd.line}: {part}"
                if words[:1] == ["rnnzoo"]:
                    try:
                        parser.parse_args(words[1:])
                    except SystemExit as e:
                        pytest.fail(f"{where}: the CLI refuses it (exit {e.code})")
                    checked += 1
                for w in words:
                    if re.match(r"^(\.venv/bin/|scripts/|benchmarks/[\w_]+\.py|tests/)", w):
                        assert (ROOT / w).exists(), f"{where}: {w} does not exist"
    assert checked >= 40


# ---------------------------------------------------------------------------------------------------- slow


def _run_page(page: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    blocks = [b for b in page_blocks(page) if b.mode not in ("skip", "quick")]
    text = "".join(b.text for b in blocks)
    mqtt_url = nats_url = None
    nats_port = free_port()
    if re.search(r"mqtt://|rnnzoo (serve|simulate)\b|serve.toml|service.toml", text):
        mqtt_url = request.getfixturevalue("mosquitto").url
    own_nats = "nats-server -c" in text
    if "nats://" in text and not own_nats:
        from streaming.jetstream import Layout, LocalNatsServer

        server = LocalNatsServer(str(tmp_path / "nats"), Layout(8))
        server.start()
        request.addfinalizer(server.stop)
        nats_url = server.url
    elif own_nats:
        nats_url = f"nats://127.0.0.1:{nats_port}"
    session = Session(tmp_path / "work", mqtt_url, nats_url, nats_port)
    if page.name == "models.md":  # retraining writes the models folder: a copy of the shipped one
        shutil.copytree(ROOT / "saved_models", tmp_path / "models")
        session.env["RNNZOO_MODELS"] = str(tmp_path / "models")
    try:
        for block in blocks:
            began = time.monotonic()
            session.run(block)
            print(f"{block.id} ({block.mode}): {time.monotonic() - began:.1f} s")
        session.stop()
    finally:
        session.kill_all()


SLOW_PAGES = sorted({b.page for b in BLOCKS if b.mode not in ("skip", "quick")})


@pytest.mark.slow  # a page's blocks as a reader runs them: models trained, evaluated, served (minutes)
@pytest.mark.parametrize("page", SLOW_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_page_blocks_run_as_written(page: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    _run_page(page, tmp_path, request)


QUICK = [b for b in BLOCKS if b.mode == "quick"]


@pytest.mark.parametrize("block", QUICK, ids=lambda b: b.id)
def test_quick_block_runs(block: Block, tmp_path: Path) -> None:
    began = time.monotonic()
    session = Session(tmp_path, None, None, free_port())
    try:
        session.run(block)
    finally:
        session.kill_all()
    assert time.monotonic() - began < 3, (
        f"{block.id} is marked quick but took {time.monotonic() - began:.1f} s"
    )


# ---------------------------------------------------------------------------------------------------- figures

NUMBER = re.compile(r"(?<![\w.^-])\d[\d,]*(?:\.(\d+))?(?![\w-])")


def _numeric_leaves(value: object) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [float(value)]
    if isinstance(value, dict):
        return [x for v in value.values() for x in _numeric_leaves(v)]
    if isinstance(value, list):
        return [x for v in value for x in _numeric_leaves(v)]
    return []


def _shown(text: str, values: list[float]) -> list[str]:
    """The figures in `text` that no value rounds to, at the precision the text shows."""
    missing = []
    for m in NUMBER.finditer(text):
        digits = len(m.group(1) or "")
        want = m.group(0).replace(",", "")
        if not any(f"{v:.{digits}f}" == f"{float(want):.{digits}f}" for v in values):
            missing.append(m.group(0))
    return missing


def test_readme_model_table_figures_are_the_cards() -> None:
    """Every figure in the README's table of shipped models is a test metric (or a baseline's) of that row's cards."""
    import json

    text = (ROOT / "README.md").read_text()
    table = text[text.index("## Shipped models") :].split("\n## ")[0]
    rows = [r for r in table.splitlines() if r.startswith("| `")]
    assert len(rows) >= 15
    named = set()
    for row in rows:
        model, _, result, baselines = (c.strip() for c in row.strip("|").split(" | "))
        first, *others = re.findall(r"`([^`]+)`", model)
        names = [first] + [first.split("-")[0] + o for o in others]
        cards = [json.loads((ROOT / "saved_models" / n / "card.json").read_text()) for n in names]
        parts = result.split(" / ") if len(names) > 1 else [result]
        assert len(parts) == len(names), f"{row}: one result per model"
        for name, card, part in zip(names, cards, parts, strict=True):
            missing = _shown(part, _numeric_leaves(card["test_metrics"]))
            assert not missing, f"README's {name}: {missing} are not on its card's test metrics"
        missing = _shown(baselines, [v for c in cards for v in _numeric_leaves(c["baselines"])])
        assert not missing, f"README's {first}: baselines {missing} are not on its card"
        named.update(names)
    assert len(named) == len(list((ROOT / "saved_models").glob("*/card.json"))), "a shipped model is missing"
