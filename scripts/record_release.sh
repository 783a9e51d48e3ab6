#!/usr/bin/env bash
# Records release VERSION for the upgrade tests of later versions
# (docs/upgrading.md, "Cutting a release"): its template's facts
# (infra/releases/VERSION.json, scripts/upgrade_test.py) and its table as its
# stack writes it after one provision per marketplace
# (infra/releases/VERSION-items.json, scripts/release_items.py).
#
# Usage: bash scripts/record_release.sh VERSION   (from the repository root, at the release's commit)
set -euo pipefail
version="${1:?usage: record_release.sh VERSION}"
.tools/venv/bin/python scripts/upgrade_test.py record "$version" HEAD
# Without the local runner: what the stack still owes (a grant's exchange,
# a Clever Cloud add-on's details) is recorded owed, for the next version to settle.
bash scripts/stack.sh test bash -c "
  set -e
  target/debug/provider try provision --marketplace clevercloud --manifest \"\$MANIFEST\" >/dev/null
  # A grant that outlives the recording (Heroku's last minutes): the next version must exchange it.
  target/debug/provider try provision --marketplace heroku --grant-expires-in 3153600000 --manifest \"\$HEROKU_MANIFEST\" >/dev/null
  target/debug/provider try provision --marketplace scalingo --manifest \"\$SCALINGO_MANIFEST\" >/dev/null
  .tools/moto/bin/python scripts/release_items.py record infra/releases/$version-items.json
"
