"""The documentation stays true (issue 41): every command shown in the README's code blocks names a
console script of ``setup.py`` or a file of the repository that exists, and each carpose console script
it names answers ``--help``; every relative link of the README, the model cards and ``docs/`` resolves
(a ``#anchor`` to a heading of the file it names). The user pages of ``docs/`` have their commands
checked too, more leniently (lines that do not start with a known command are taken for output).
"""

from __future__ import annotations

import re
import shlex
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = REPO / ".venv" / "bin"

#: Pages whose commands are checked. README: strictly (every line of a shell block is a command);
#: the others leniently. The lab notebook (docs/experiments) is history: its links are checked, not
#: its commands, which record what ran then.
STRICT_PAGES = ["README.md"]
LENIENT_PAGES = ["models/README.md", "docs/runtime.md", "docs/ros.md", "docs/training.md",
                 "docs/evaluation.md", "docs/real_eval.md", "docs/benchmarks.md", "docs/scaling.md"]
#: Commands that come from elsewhere (the system, ROS 2, pip): allowed as they are.
EXTERNAL = {"ros2", "pip", "colcon", "yolo", "git", "mkdir", "cd", "sudo", "export", "docker",
            "cp", "rqt_image_view", "ray", "kubectl"}
#: First path components that mean "a file of this repository".
REPO_DIRS = {"scripts", "bench", "training", "carpose", "tests", "config", "launch", "models",
             "docs", "requirements", "ros2_ws", "data"}
SHELL_LANGS = {"", "bash", "sh", "shell", "console"}
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def console_scripts() -> set[str]:
    text = (REPO / "setup.py").read_text()
    return set(re.findall(r'"([\w.-]+)\s*=\s*[\w.]+:\w+"', text))


def code_blocks(text: str) -> list[tuple[str, list[str]]]:
    """The code blocks of a markdown page: (language, lines); indented blocks have language ''."""
    blocks: list[tuple[str, list[str]]] = []
    lines = text.split("\n")
    i, prev_blank = 0, True
    while i < len(lines):
        line = lines[i]
        fence = re.match(r"^\s*```(\w*)", line)
        if fence:
            body, i = [], i + 1
            while i < len(lines) and not lines[i].lstrip().startswith("```"):
                body.append(lines[i])
                i += 1
            blocks.append((fence.group(1).lower(), body))
            i, prev_blank = i + 1, False
            continue
        if prev_blank and line.startswith("    ") and line.strip():
            body = []
            while i < len(lines) and (lines[i].startswith("    ") or not lines[i].strip()):
                body.append(lines[i][4:])
                i += 1
            while body and not body[-1].strip():
                body.pop()
            blocks.append(("", body))
            prev_blank = True
            continue
        prev_blank = not line.strip()
        i += 1
    return blocks


def prose(text: str) -> str:
    """The page without its code blocks and inline code (where brackets are not links)."""
    kept, in_fence, prev_blank = [], False, True
    for line in text.split("\n"):
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
            continue
        if in_fence or (prev_blank and line.startswith("    ")):
            continue
        prev_blank = not line.strip()
        kept.append(re.sub(r"`[^`]*`", "", line))
    return "\n".join(kept)


def commands(block: list[str]) -> list[list[str]]:
    """Shell commands of a block's lines: continuations joined, comments dropped, split at && || ; |."""
    joined, cur = [], ""
    for line in block:
        if cur:
            cur += " " + line.strip()
        else:
            cur = line.strip()
        if cur.endswith("\\"):
            cur = cur[:-1]
            continue
        joined.append(cur)
        cur = ""
    if cur:
        joined.append(cur)
    out = []
    for line in joined:
        if not line or line.startswith("#"):
            continue
        lex = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lex.whitespace_split = True
        try:
            tokens = list(lex)
        except ValueError:  # an unbalanced quote: not a shell line
            tokens = line.split()
        cmd: list[str] = []
        for tok in tokens:
            if tok in {"&&", "||", ";", "|", "&"}:
                if cmd:
                    out.append(cmd)
                cmd = []
            else:
                cmd.append(tok)
        if cmd:
            out.append(cmd)
    return out


def module_exists(module: str) -> bool:
    path = REPO.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file() or (path / "__main__.py").is_file()


def repo_path(arg: str) -> bool:
    return arg.split("/")[0] in REPO_DIRS and not any(c in arg for c in "*<>{}$")


def check_command(cmd: list[str], scripts: set[str], strict: bool) -> tuple[str | None, str | None]:
    """(problem or None, carpose console script named or None) for one command."""
    words = list(cmd)
    while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):  # VAR=value prefixes
        words.pop(0)
    if not words:
        return None, None
    head, rest = words[0], words[1:]
    if head in scripts:
        return None, head
    if head.startswith("carpose"):
        return f"{head}: no such console script in setup.py", None
    if head in {"bash", "sh", "source", "."}:
        if rest and repo_path(rest[0]) and not (REPO / rest[0]).is_file():
            return f"{head} {rest[0]}: no such file", None
        return None, None
    if head in {"python", "python3", "torchrun"}:
        if "-m" in rest:
            module = rest[rest.index("-m") + 1] if rest.index("-m") + 1 < len(rest) else ""
            if module.split(".")[0] in {"carpose", "training", "bench"} and not module_exists(module):
                return f"{head} -m {module}: no such module", None
            return None, None
        path = next((a for a in rest if not a.startswith("-")), None)
        if head != "torchrun" and path and "-c" not in rest and repo_path(path) and not (REPO / path).is_file():
            return f"{head} {path}: no such file", None
        return None, None
    if head in EXTERNAL or not strict:
        return None, None
    return f"{head}: neither a console script, a file of the repository nor a known tool", None


def page_problems(page: str, text: str, strict: bool) -> tuple[list[str], set[str]]:
    scripts = console_scripts()
    problems, named = [], set()
    for lang, block in code_blocks(text):
        if lang not in SHELL_LANGS:
            continue
        for cmd in commands(block):
            problem, script = check_command(cmd, scripts, strict)
            if problem:
                problems.append(f"{page}: {problem}   [{' '.join(cmd)[:100]}]")
            if script:
                named.add(script)
    return problems, named


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def link_problems(path: Path, text: str) -> list[str]:
    problems = []
    for target in LINK.findall(prose(text)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        rel = path.relative_to(REPO) if path.is_relative_to(REPO) else path
        if not dest.exists():
            problems.append(f"{rel}: link {target} -> no such file")
            continue
        if anchor and dest.suffix == ".md":
            anchors = {slug(m) for m in re.findall(r"^#+\s+(.*)$", dest.read_text(), flags=re.M)}
            if anchor not in anchors:
                problems.append(f"{rel}: link {target} -> no heading #{anchor} in {dest.name}")
    return problems


def doc_pages() -> list[Path]:
    return [REPO / "README.md", REPO / "models" / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def test_every_relative_link_resolves():
    problems = [p for page in doc_pages() for p in link_problems(page, page.read_text())]
    assert not problems, "\n".join(problems)


def test_every_readme_command_names_something_that_exists():
    problems = []
    for page in STRICT_PAGES:
        problems += page_problems(page, (REPO / page).read_text(), strict=True)[0]
    for page in LENIENT_PAGES:
        problems += page_problems(page, (REPO / page).read_text(), strict=False)[0]
    assert not problems, "\n".join(problems)


def test_the_checks_can_fail(tmp_path):
    """A broken link, a missing script, an unknown console script and an unknown tool are all caught."""
    page = tmp_path / "page.md"
    text = ("See [gone](no/such/file.md) and [ok](page.md) and [bad anchor](page.md#nowhere).\n\n# Title\n\n"
            "    bash scripts/no_such_script.sh\n    carpose-no-such-tool --out x\n    frobnicate --now\n"
            "    python -m carpose.no_such_module\n")
    page.write_text(text)
    links = link_problems(page, text)
    assert any("no/such/file.md" in p for p in links) and any("#nowhere" in p for p in links)
    assert len(links) == 2
    problems = page_problems("page.md", text, strict=True)[0]
    assert len(problems) == 4, problems
    assert not page_problems("page.md", "    source scripts/env.sh\n    carpose-benchmark --out x\n", strict=True)[0]


def test_console_scripts_shown_answer_help():
    """Each carpose console script the README and the checked pages name runs ``--help`` with exit
    status 0, in the shell
    ``source scripts/env.sh`` gives (as a user runs it). ``carpose_node`` takes ROS arguments, not
    ``--help`` (it would start the node), so its entry point is imported instead."""
    if not (VENV_BIN / "python").is_file() or not (VENV_BIN / "carpose-benchmark").is_file():
        pytest.skip("no venv with the carpose console scripts (bash scripts/setup.sh)")
    named = page_problems("README.md", (REPO / "README.md").read_text(), strict=True)[1]
    assert named, "the README names no console script: the parser is broken"
    for page in LENIENT_PAGES:
        named |= page_problems(page, (REPO / page).read_text(), strict=False)[1]

    def run(script: str) -> tuple[str, int, str]:
        cmd = (f'{VENV_BIN / "python"} -c "import carpose.ros.node"' if script == "carpose_node"
               else f"{shlex.quote(script)} --help")
        res = subprocess.run(["bash", "-c", f"source scripts/env.sh && {cmd}"], cwd=REPO,
                             capture_output=True, text=True, timeout=120)
        return script, res.returncode, (res.stderr or res.stdout)[-600:]

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run, sorted(named)))
    failed = [f"{s}: exit {rc}\n{err}" for s, rc, err in results if rc != 0]
    assert not failed, "\n".join(failed)
