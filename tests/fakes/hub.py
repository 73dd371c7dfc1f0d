"""A fake Hugging Face hub: the HTTP endpoints ``huggingface_hub`` downloads a model through.

Point ``HF_ENDPOINT`` at it. It serves the files of each repository it holds, at one commit:

* ``GET /api/models/{repo}`` and ``.../revision/{rev}``: the model's info (its commit sha, files);
* ``GET /api/models/{repo}/tree/{rev}``: the file list (``list_repo_tree``, ``list_repo_files``);
* ``HEAD``/``GET /{repo}/resolve/{rev}/{path}``: a file, with the hub's ``X-Repo-Commit`` and
  ``ETag`` headers (no Xet headers, so clients download over plain HTTP).

A repository it does not hold answers 404, as the hub does for a model that does not exist.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from aiohttp import web

from tests.fakes.server import FakeServer


def _blob_id(data: bytes) -> str:
    """git's blob id, which the hub gives as a file's oid and ETag."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub(FakeServer):
    def __init__(self) -> None:
        super().__init__()
        self.repos: dict[str, dict[str, bytes]] = {}
        self.downloads: list[str] = []  # "repo/path" of every file sent (GET)

    def add(self, repo_id: str, folder: Path) -> None:
        """Serve the files of ``folder`` (not its subfolders) as the repository ``repo_id``."""
        self.repos[repo_id] = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}

    def sha(self, repo_id: str) -> str:
        files = self.repos[repo_id]
        return hashlib.sha1(
            b"".join(name.encode() + _blob_id(data).encode() for name, data in files.items())
        ).hexdigest()

    def routes(self, app: web.Application) -> None:
        app.router.add_route("GET", "/api/models/{tail:.+}", self._api)
        app.router.add_route("*", "/{tail:.+}", self._resolve)

    def _split(self, tail: str, marker: str) -> tuple[str, str] | None:
        repo, found, rest = tail.partition(marker)
        return (repo, rest) if found and repo in self.repos else None

    async def _api(self, request: web.Request) -> web.Response:
        tail = request.match_info["tail"]
        if tree := self._split(tail, "/tree/"):
            repo = tree[0]
            entries = [
                {"type": "file", "oid": _blob_id(data), "size": len(data), "path": name}
                for name, data in self.repos[repo].items()
            ]
            return web.json_response(entries)
        repo = revision[0] if (revision := self._split(tail, "/revision/")) else tail
        if repo not in self.repos:
            return web.json_response({"error": "Repository Not Found"}, status=404)
        return web.json_response(
            {
                "id": repo,
                "modelId": repo,
                "sha": self.sha(repo),
                "private": False,
                "siblings": [{"rfilename": name} for name in self.repos[repo]],
            }
        )

    async def _resolve(self, request: web.Request) -> web.StreamResponse:
        found = self._split(request.match_info["tail"], "/resolve/")
        if found is None:
            return web.json_response({"error": "Repository Not Found"}, status=404)
        repo, rest = found
        _, _, name = rest.partition("/")  # the revision, then the file's path
        data = self.repos[repo].get(name)
        if data is None:
            return web.json_response({"error": "Entry not found"}, status=404)
        if request.method == "GET":
            self.downloads.append(f"{repo}/{name}")
        # aiohttp sends a HEAD answer's headers (Content-Length too) without the body
        return web.Response(
            body=data, headers={"X-Repo-Commit": self.sha(repo), "ETag": f'"{_blob_id(data)}"'}
        )
