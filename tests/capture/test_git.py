"""Code capture against real repositories: every uncommitted byte, restorable elsewhere."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from reprokit._capture.git import EMPTY_TREE, capture_code
from tests.conftest import clean_env, git, make_repo, run_python


def tree_file(repo: Path, tree: str, path: str) -> bytes:
    return subprocess.run(
        ["git", "cat-file", "blob", f"{tree}:{path}"], cwd=repo, capture_output=True, check=True
    ).stdout


def tree_paths(repo: Path, tree: str) -> set[str]:
    return set(git(repo, "ls-tree", "-r", "--name-only", tree).split())


def restore_elsewhere(repo: Path, section: dict, patch: bytes, dest: Path) -> str:
    """Rebuild the recorded tree in a fresh clone from commit + portable patch; its tree id."""
    if section["commit"]:
        git(dest.parent, "clone", "-q", str(repo), dest.name)
        git(dest, "checkout", "-q", section["commit"])
    else:
        dest.mkdir()
        git(dest, "init", "-q")
    if patch:
        (dest.parent / "p.patch").write_bytes(patch)
        git(dest, "apply", "--binary", "--index", str(dest.parent / "p.patch"))
    return git(dest, "write-tree").strip()


def test_clean_repository_records_head_and_its_tree(repo):
    cap = capture_code(repo)
    s = cap.section
    assert s["kind"] == "git" and s["dirty"] is False
    assert s["commit"] == git(repo, "rev-parse", "HEAD").strip()
    assert s["tree"] == git(repo, "rev-parse", "HEAD^{tree}").strip()
    assert s["branch"] == "main" and s["detached"] is False
    assert "patch" not in s and not cap.blobs


def test_commit_is_kept_alive_by_a_ref_after_its_branch_is_deleted(repo):
    git(repo, "checkout", "-q", "-b", "exp")
    (repo / "exp.py").write_text("x = 1\n")
    git(repo, "add", "exp.py")
    git(repo, "commit", "-q", "-m", "exp")
    cap = capture_code(repo)
    git(repo, "checkout", "-q", "main")
    git(repo, "branch", "-q", "-D", "exp")
    git(repo, "gc", "-q", "--prune=now")
    assert git(repo, "cat-file", "-t", cap.section["commit"]).strip() == "commit"


def test_staged_unstaged_and_untracked_changes_are_all_in_the_tree(repo):
    (repo / "README.md").write_text("staged\n")
    git(repo, "add", "README.md")
    (repo / "src/model.py").write_text("W = 2  # unstaged\n")
    (repo / "helper.py").write_text("def f(): return 3\n")
    (repo / ".gitignore").write_text("*.log\n")
    (repo / "debug.log").write_text("ignored\n")
    cap = capture_code(repo)
    s = cap.section
    assert s["dirty"] is True
    assert s["changes"]["staged"]["paths"] == ["README.md"]
    assert s["changes"]["unstaged"]["paths"] == ["src/model.py"]
    assert set(s["changes"]["untracked"]["paths"]) == {".gitignore", "helper.py"}
    tree = s["tree"]
    assert tree_file(repo, tree, "README.md") == b"staged\n"
    assert tree_file(repo, tree, "src/model.py") == b"W = 2  # unstaged\n"
    assert tree_file(repo, tree, "helper.py") == b"def f(): return 3\n"
    assert "debug.log" not in tree_paths(repo, tree)
    assert s["ref"] == f"refs/reprokit/snapshots/{tree}"
    assert git(repo, "rev-parse", s["ref"]).strip() == tree


def test_capture_leaves_the_users_index_and_status_untouched(repo):
    (repo / "README.md").write_text("staged\n")
    git(repo, "add", "README.md")
    (repo / "src/model.py").write_text("W = 2\n")
    (repo / "new.py").write_text("n = 1\n")
    status = git(repo, "status", "--porcelain")  # refreshes the index's stat data first
    index = (repo / ".git/index").read_bytes()
    capture_code(repo)
    assert (repo / ".git/index").read_bytes() == index
    assert git(repo, "status", "--porcelain") == status


def test_deleted_tracked_file_is_absent_from_the_tree(repo):
    (repo / "src/model.py").unlink()
    cap = capture_code(repo)
    assert "src/model.py" not in tree_paths(repo, cap.section["tree"])
    assert "src/model.py" in cap.section["changes"]["unstaged"]["paths"]


def test_binary_changes_round_trip_through_the_portable_patch(repo, tmp_path):
    blob = bytes(range(256)) * 64
    (repo / "weights.bin").write_bytes(blob)
    (repo / "README.md").write_bytes(b"\x00\xff binary now\n")
    cap = capture_code(repo)
    s = cap.section
    patch = cap.blobs[s["patch"]["sha256"]]
    assert len(patch) == s["patch"]["size"]
    rebuilt = restore_elsewhere(repo, s, patch, tmp_path / "clone")
    assert rebuilt == s["tree"]
    assert (tmp_path / "clone" / "weights.bin").read_bytes() == blob


def test_repository_without_commits_snapshots_everything(tmp_path):
    repo = make_repo(tmp_path / "fresh", {"a.py": "A = 1\n", "b.txt": "b\n"}, commit=False)
    git(repo, "add", "a.py")
    cap = capture_code(repo)
    s = cap.section
    assert s["commit"] is None and s["dirty"] is True
    assert s["patch"]["base"] == EMPTY_TREE
    assert tree_paths(repo, s["tree"]) == {"a.py", "b.txt"}
    rebuilt = restore_elsewhere(repo, s, cap.blobs[s["patch"]["sha256"]], tmp_path / "again")
    assert rebuilt == s["tree"]


def test_detached_head_is_recorded_as_detached(repo):
    head = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "checkout", "-q", "--detach", head)
    s = capture_code(repo).section
    assert s["branch"] is None and s["detached"] is True and s["commit"] == head


def test_remote_credentials_are_stripped(repo):
    git(repo, "remote", "add", "origin", "https://alice:s3cr3t-token@example.com/org/repo.git")
    git(repo, "remote", "add", "mirror", "git@example.com:org/repo.git")
    s = capture_code(repo).section
    assert s["remotes"] == {
        "mirror": "git@example.com:org/repo.git",
        "origin": "https://example.com/org/repo.git",
    }
    assert "s3cr3t" not in repr(s)


def test_untracked_files_over_the_caps_are_skipped_with_the_reason(repo):
    (repo / "big.bin").write_bytes(b"x" * 5000)
    (repo / "a.txt").write_bytes(b"a" * 600)
    (repo / "b.txt").write_bytes(b"b" * 600)
    s = capture_code(repo, max_file_bytes=4000, max_total_bytes=1000).section
    skipped = {item["path"]: item["reason"] for item in s["skipped"]}
    assert "per file" in skipped["big.bin"]
    assert "per run" in skipped["b.txt"]
    assert s["changes"]["untracked"]["paths"] == ["a.txt"]
    assert "big.bin" not in tree_paths(repo, s["tree"])


def test_submodule_commits_are_recorded_and_dirty_content_is_flagged(tmp_path):
    lib = make_repo(tmp_path / "lib", {"lib.py": "L = 1\n"})
    repo = make_repo(tmp_path / "main", {"main.py": "M = 1\n"})
    subprocess.run(
        ["git", "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib), "lib"],
        cwd=repo,
        env=clean_env(),
        check=True,
        capture_output=True,
    )
    git(repo, "commit", "-q", "-m", "add submodule")
    clean = capture_code(repo).section
    assert clean["dirty"] is False
    (repo / "lib" / "lib.py").write_text("L = 2\n")
    s = capture_code(repo).section
    assert s["submodules"][0]["path"] == "lib"
    assert s["submodules"][0]["modified_content"] is True
    assert any("submodule lib" in note for note in s["incomplete"])


def test_outside_git_the_entry_file_and_its_local_modules_are_snapshotted(tmp_path):
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "helper.py").write_text("VALUE = 42\n")
    (folder / "unused.py").write_text("NOPE = 1\n")
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "import helper\n"
        "from reprokit._capture.git import capture_code\n"
        "cap = capture_code(Path.cwd(), Path(__file__))\n"
        "print(json.dumps(cap.section))\n"
    )
    proc = run_python(folder, code)
    assert proc.returncode == 0, proc.stderr
    import json

    s = json.loads(proc.stdout)
    assert s["kind"] == "snapshot"
    assert set(s["files"]) == {"job.py", "helper.py"}
    assert s["digest"].startswith("sha256:")


def test_without_git_on_path_code_falls_back_to_a_snapshot(repo, tmp_path):
    empty = tmp_path / "nobin"
    empty.mkdir()
    env = clean_env(PATH=str(empty))
    code = (
        "import json\nfrom pathlib import Path\n"
        "from reprokit._capture.git import capture_code\n"
        "print(json.dumps(capture_code(Path.cwd(), Path(__file__)).section))\n"
    )
    import sys

    (repo / "job.py").write_text(code)
    proc = subprocess.run(
        [sys.executable, "job.py"], cwd=repo, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert '"kind": "snapshot"' in proc.stdout and "git not found" in proc.stdout


def test_capture_never_raises_in_a_broken_repository(repo):
    (repo / ".git" / "HEAD").write_text("garbage\n")
    s = capture_code(repo).section
    assert isinstance(s, dict)
    assert os.path.isdir(repo)


def test_a_dirty_snapshot_survives_gc(repo):
    (repo / "new.py").write_text("N = 1\n")
    tree = capture_code(repo).section["tree"]
    git(repo, "gc", "-q", "--prune=now")
    assert git(repo, "cat-file", "-t", tree).strip() == "tree"
    assert "new.py" in tree_paths(repo, tree)


def test_capture_from_a_subfolder_finds_the_repository_root(repo):
    s = capture_code(repo / "src").section
    assert s["kind"] == "git" and s["commit"] == git(repo, "rev-parse", "HEAD").strip()


def test_a_file_rewritten_in_the_same_clock_tick_as_the_commit_is_captured(tmp_path):
    # Same size and, as within one filesystem clock tick, the same mtime as the index entry:
    # only git's "racy timestamp" check (file not older than the index) reveals the change.
    repo = make_repo(tmp_path / "r", {"helper.py": "SCALE = 1.0\n"})
    git(repo, "config", "core.trustctime", "false")  # ctime cannot be set back; mtime can
    st = os.stat(repo / "helper.py")
    (repo / "helper.py").write_text("SCALE = 5.0\n")
    for path in (repo / "helper.py", repo / ".git" / "index"):
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    s = capture_code(repo).section
    assert tree_file(repo, s["tree"], "helper.py") == b"SCALE = 5.0\n"


def test_many_untracked_files_go_through_one_pack_and_keep_their_content(repo):
    folder = repo / "gen"
    folder.mkdir()
    for i in range(600):
        (folder / f"f{i}.txt").write_text(f"content {i}\n")
    s = capture_code(repo).section
    assert s["changes"]["untracked"]["count"] == 600
    assert tree_file(repo, s["tree"], "gen/f417.txt") == b"content 417\n"
    assert len(tree_paths(repo, s["tree"])) == 602
