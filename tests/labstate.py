"""Change a running lab into a chosen state and undo every change afterwards."""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import psycopg
import requests

TIMEOUT = 10


class LabState:
    def __init__(self, lab):
        self.lab = lab
        self.http = requests.Session()
        self.http.headers["X-Consul-Token"] = Path(lab.management_token_file).read_text().strip()
        self._undo: list = []

    # -- plumbing ----------------------------------------------------------

    def consul(self, method: str, path: str, **kwargs) -> requests.Response:
        answer = self.http.request(method, f"{self.lab.consul_url}{path}", timeout=TIMEOUT, **kwargs)
        return answer

    def consul_ok(self, method: str, path: str, **kwargs):
        answer = self.consul(method, path, **kwargs)
        if answer.status_code != 200:
            raise RuntimeError(f"{method} {path} answered {answer.status_code}: {answer.text}")
        return answer.json() if answer.content else None

    def on_restore(self, action) -> None:
        self._undo.append(action)

    def restore(self) -> None:
        while self._undo:
            self._undo.pop()()

    def root_path(self, node_path: str) -> Path:
        return Path(self.lab.root) / node_path.lstrip("/")

    @property
    def site(self) -> dict:
        return tomllib.loads(Path(self.lab.site_file).read_text())

    def site_file_with(self, directory: Path, text: str) -> Path:
        """Write a copy of the lab's site file with ``text`` appended to the end."""
        path = directory / "site.toml"
        path.write_text(Path(self.lab.site_file).read_text() + "\n" + text)
        return path

    # -- ACL -----------------------------------------------------------------

    def policy(self, name: str = "carbonio-gateway-policy") -> dict:
        return self.consul_ok("GET", f"/v1/acl/policy/name/{name}")

    def set_policy_rules(self, rules: str) -> None:
        policy = self.policy()
        previous = {key: policy[key] for key in ("ID", "Name", "Description", "Rules")}
        self.consul_ok("PUT", f"/v1/acl/policy/{policy['ID']}", json={**previous, "Rules": rules})
        self.on_restore(lambda: self.consul_ok("PUT", f"/v1/acl/policy/{previous['ID']}", json=previous))

    def create_policy(self, name: str, rules: str) -> dict:
        policy = self.consul_ok("PUT", "/v1/acl/policy", json={"Name": name, "Rules": rules})
        self.on_restore(lambda: self.consul("DELETE", f"/v1/acl/policy/{policy['ID']}"))
        return policy

    def create_token(self, policies: list[dict], **extra) -> dict:
        token = self.consul_ok("PUT", "/v1/acl/token", json={"Policies": policies, **extra})
        self.on_restore(lambda: self.consul("DELETE", f"/v1/acl/token/{token['AccessorID']}"))
        return token

    def token_file_for(self, directory: Path, token: dict) -> Path:
        path = directory / f"token-{token['AccessorID'][:8]}"
        path.write_text(token["SecretID"] + "\n")
        os.chmod(path, 0o600)
        return path

    # -- files in the target root -------------------------------------------

    def keep_file(self, node_path: str) -> Path:
        """Remember a root file (content, owner, mode) so restore puts it back."""
        path = self.root_path(node_path)
        if path.exists():
            saved = path.read_bytes()
            info = path.stat()
            def put_back():
                path.write_bytes(saved)
                os.chown(path, info.st_uid, info.st_gid)
                os.chmod(path, info.st_mode & 0o7777)
            self.on_restore(put_back)
        else:
            self.on_restore(lambda: path.unlink(missing_ok=True))
        return path

    def write_file(self, node_path: str, text: str) -> None:
        path = self.keep_file(node_path)
        path.write_text(text)

    def chmod(self, node_path: str, mode: int, owner: str | None = None) -> None:
        path = self.keep_file(node_path)
        os.chmod(path, mode)
        if owner is not None:
            uid = 0 if owner == "root" else _lookup(self.root_path("/etc/passwd"), owner)
            gid = 0 if owner == "root" else _lookup(self.root_path("/etc/group"), owner)
            os.chown(path, uid, gid)

    def remove_file(self, node_path: str) -> None:
        path = self.keep_file(node_path)
        path.unlink()

    # -- systemd --------------------------------------------------------------

    def systemctl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["systemctl", f"--root={self.lab.root}", *args], capture_output=True, text=True, check=False)

    def disable_unit(self, unit: str = "carbonio-gateway.service") -> None:
        self.systemctl("disable", unit)
        self.on_restore(lambda: self.systemctl("enable", unit))

    # -- catalog and config entries -------------------------------------------

    def keep_catalog_service(self, name: str = "carbonio-files-db") -> None:
        saved = self.consul_ok("GET", f"/v1/catalog/service/{name}")
        def put_back():
            for entry in self.consul_ok("GET", f"/v1/catalog/service/{name}"):
                self.consul_ok("PUT", "/v1/catalog/deregister", json={"Node": entry["Node"], "ServiceID": entry["ServiceID"]})
            for entry in saved:
                self.consul_ok("PUT", "/v1/catalog/register", json={
                    "Node": entry["Node"], "Address": entry["Address"], "NodeMeta": entry["NodeMeta"],
                    "Service": {"ID": entry["ServiceID"], "Service": entry["ServiceName"], "Port": entry["ServicePort"]},
                })
        self.on_restore(put_back)

    def register(self, body: dict) -> None:
        self.keep_catalog_service(body["Service"]["Service"])
        self.consul_ok("PUT", "/v1/catalog/register", json=body)

    def deregister(self, node: str, service_id: str) -> None:
        self.keep_catalog_service()
        self.consul_ok("PUT", "/v1/catalog/deregister", json={"Node": node, "ServiceID": service_id})

    def keep_config_entry(self, kind: str, name: str) -> None:
        answer = self.consul("GET", f"/v1/config/{kind}/{name}")
        saved = answer.json() if answer.status_code == 200 else None
        def put_back():
            if saved is None:
                self.consul("DELETE", f"/v1/config/{kind}/{name}")
                return
            body = {key: value for key, value in saved.items() if key not in ("CreateIndex", "ModifyIndex", "Hash")}
            self.consul_ok("PUT", "/v1/config", json=body)
        self.on_restore(put_back)

    def write_config_entry(self, body: dict) -> None:
        self.keep_config_entry(body["Kind"], body["Name"])
        self.consul_ok("PUT", "/v1/config", json=body)

    def delete_config_entry(self, kind: str, name: str) -> None:
        self.keep_config_entry(kind, name)
        self.consul_ok("DELETE", f"/v1/config/{kind}/{name}")

    # -- KV -------------------------------------------------------------------

    def keep_kv(self, key: str) -> None:
        answer = self.consul("GET", f"/v1/kv/{key}", params={"raw": ""})
        saved = answer.content if answer.status_code == 200 else None
        if saved is None:
            self.on_restore(lambda: self.consul("DELETE", f"/v1/kv/{key}"))
        else:
            self.on_restore(lambda: self.consul_ok("PUT", f"/v1/kv/{key}", data=saved))

    def kv_put(self, key: str, value: str) -> None:
        self.keep_kv(key)
        self.consul_ok("PUT", f"/v1/kv/{key}", data=value.encode())

    def kv_delete(self, key: str) -> None:
        self.keep_kv(key)
        self.consul_ok("DELETE", f"/v1/kv/{key}")

    def kv_value(self, key: str) -> str | None:
        answer = self.consul("GET", f"/v1/kv/{key}", params={"raw": ""})
        return answer.text if answer.status_code == 200 else None

    # -- PostgreSQL -------------------------------------------------------------

    def sql(self, statement: str, undo: str | None = None) -> None:
        with psycopg.connect(**self.lab.pg.connect_kwargs(), autocommit=True) as conn:
            conn.execute(statement)
        if undo:
            self.on_restore(lambda: self.sql(undo))

    # -- packages ------------------------------------------------------------------

    def dpkg(self, *args: str) -> subprocess.CompletedProcess:
        root = self.lab.root
        options = [f"--root={root}", f"--admindir={root}/var/lib/dpkg", f"--log={root}/var/log/dpkg.log"]
        return subprocess.run(["dpkg", *options, *args], capture_output=True, text=True, check=False)

    def package_status(self, name: str) -> str:
        completed = subprocess.run(
            ["dpkg-query", f"--admindir={self.root_path('/var/lib/dpkg')}", "-W", "-f=${Status}", name],
            capture_output=True, text=True, check=False,
        )
        return completed.stdout.strip() or "not-installed"

    def install_package(self, deb: Path) -> subprocess.CompletedProcess:
        """Install with the real dpkg; restore purges the package again."""
        self.on_restore(lambda: self.dpkg("--purge", "carbonio-files-db"))
        return self.dpkg("--install", str(deb))

    def keep_dpkg_database(self) -> None:
        admindir = self.root_path("/var/lib/dpkg")
        copy = admindir.with_name("dpkg.saved")
        shutil.copytree(admindir, copy, symlinks=True)
        def put_back():
            shutil.rmtree(admindir)
            shutil.move(copy, admindir)
        self.on_restore(put_back)


def _lookup(database: Path, name: str) -> int:
    for line in database.read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return int(fields[2])
    raise LookupError(f"{name} not in {database}")


def build_package(directory: Path, name: str = "carbonio-files-db", postinst: str | None = None) -> Path:
    """Build a small real .deb; a postinst that cannot run leaves the package half-configured."""
    from mesh_compliance.lab import documented
    from mesh_compliance.lab.debpkg import build_deb

    spec = documented.files_db_package()
    deb = build_deb(spec, directory)
    if postinst is None:
        return deb
    tree = directory / spec.name
    script = tree / "DEBIAN" / "postinst"
    script.write_text(postinst)
    os.chmod(script, 0o755)
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(tree), str(deb)], check=True, capture_output=True)
    return deb
