"""File changes on a node, made by POSIX shell and coreutils through the node's own connection.

The same commands run on the local backend and over SSH, so a fix changes a
remote node exactly as it changes the local one. Paths are the ones the
node's tools see (``Target.path`` already applied). A file's content travels
on stdin only (see mesh_compliance.node_input).
"""

from __future__ import annotations

from mesh_compliance.errors import FixError
from mesh_compliance.target import Target

# Every script takes its values as positional parameters, never spliced into
# its text, so a path with spaces or quotes stays one argument.

_EXISTS = '[ -e "$1" ] || [ -L "$1" ]'

# A backup is named PATH.STAMP.bak, or PATH.STAMP-N.bak when that name is taken.
_FREE_NAME = '''
backup="$1.$2.bak"
n=1
while [ -e "$backup" ] || [ -L "$backup" ]; do
    backup="$1.$2-$n.bak"
    n=$((n + 1))
done
'''

# cp -p keeps owner, group, mode and times when it runs as root.
_COPY_ASIDE = "set -eu\n" + _FREE_NAME + '''cp -p -- "$1" "$backup"
printf '%s\\n' "$backup"
'''

_MOVE_ASIDE = "set -eu\n" + _FREE_NAME + '''mv -T -- "$1" "$backup"
printf '%s\\n' "$backup"
'''

# mktemp creates the file with mode 0600, so the content is never readable
# by others before chown and chmod. sync flushes the file, then the rename.
_REPLACE = '''set -eu
dir=$(dirname -- "$1")
if [ ! -d "$dir" ]; then
    echo "directory $dir does not exist" >&2
    exit 3
fi
tmp=$(mktemp "$dir/.mesh-compliance-XXXXXX")
trap 'rm -f -- "$tmp"' EXIT
cat > "$tmp"
chown -- "$2" "$tmp"
chmod -- "$3" "$tmp"
sync -- "$tmp"
mv -f -- "$tmp" "$1"
trap - EXIT
sync -- "$dir"
'''

_RESTORE = '''set -eu
dir=$(dirname -- "$2")
tmp=$(mktemp "$dir/.mesh-compliance-XXXXXX")
trap 'rm -f -- "$tmp"' EXIT
cp -p -- "$1" "$tmp"
mv -f -- "$tmp" "$2"
trap - EXIT
sync -- "$dir"
'''


def exists(target: Target, path: str) -> bool:
    """Return True when ``path`` exists on the node, a dangling symlink included."""
    return _shell(target, _EXISTS, "exists", path, check=False).rc == 0


def copy_aside(target: Target, path: str, stamp: str) -> str:
    """Copy ``path`` next to itself as ``PATH.STAMP.bak`` and return the copy's path."""
    return _shell(target, _COPY_ASIDE, "copy-aside", path, stamp).stdout.strip()


def move_aside(target: Target, path: str, stamp: str) -> str:
    """Rename ``path`` to ``PATH.STAMP.bak`` and return the new path."""
    return _shell(target, _MOVE_ASIDE, "move-aside", path, stamp).stdout.strip()


def replace(target: Target, path: str, content: str, uid: int, gid: int, mode: int) -> None:
    """Replace ``path`` atomically: a temporary file in the same directory, chown, chmod, sync, rename."""
    result = target.run_with_input("sh", "-c", _REPLACE, "replace", path, f"{uid}:{gid}", f"{mode:o}",
                                   data=content.encode("utf-8"))
    if result.rc == 3:
        raise FixError(f"directory of {path} does not exist on {target.name}; create it before this fix can write the file")
    if result.rc != 0:
        raise FixError(f"cannot write {path} on {target.name}: {result.stderr.strip()}")


def restore(target: Target, backup: str, path: str) -> None:
    """Copy ``backup`` back over ``path`` atomically, with the backup's owner and mode."""
    _shell(target, _RESTORE, "restore", backup, path)


def remove(target: Target, path: str) -> None:
    _shell(target, 'rm -f -- "$1"', "remove", path)


def _shell(target: Target, script: str, name: str, *args: str, check: bool = True):
    result = target.run("sh", "-c", script, name, *args)
    if check and result.rc != 0:
        raise FixError(f"{name} of {args[0]} failed on {target.name}: {result.stderr.strip()}")
    return result
