"""The warehouse layout many tests build by hand, and the source model that maps it.

Tests that write small synthetic warehouses create the tables of
:func:`orchestrator.warehouse.schema.create_source_schema` (``main.customers``, ``main.events``,
``main.consents``, ``main.privacy_requests``, ``crm.loyalty``, ``web.events``), in the
product's own names and words. The demo's ``activation.yaml`` maps a retailer's layout
instead, so such a test takes the project config with this layout's model (the fragment
``tests/layouts/main_source.yaml``) and its catalog (``tests/layouts/main_catalog.json``):

- :func:`create_layout_tables` creates the tables (and the views of this model);
- :func:`with_layout` puts the fragment into a config read as a dict (a test's own edits kept);
- :func:`write_layout_config` writes the repository's ``activation.yaml`` with the fragment
  (and the catalog beside it) where a test points ``ACTIVATION_CONFIG``;
- :func:`layout_project` is that config loaded.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import duckdb
import yaml

from orchestrator.config import ProjectConfig, catalog_path_for, load_project_config
from orchestrator.model.views import refresh_source_views
from orchestrator.warehouse.schema import create_source_schema

REPO = Path(__file__).resolve().parents[1]
LAYOUTS = Path(__file__).resolve().parent / "layouts"
#: The ``source:`` fragment mapping the hand-built layout (a YAML mapping with one key).
SOURCE_FRAGMENT = LAYOUTS / "main_source.yaml"
#: The catalog of that model (what ``activation catalog`` writes for it).
CATALOG = LAYOUTS / "main_catalog.json"


def layout_source() -> dict[str, Any]:
    """The ``source:`` section for the hand-built layout, as a dict."""
    return yaml.safe_load(SOURCE_FRAGMENT.read_text(encoding="utf-8"))["source"]


def with_layout(config: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` (an ``activation.yaml`` read as a dict) whose source model maps
    the hand-built layout."""
    out = copy.deepcopy(config)
    out["source"] = layout_source()
    return out


def repo_config() -> dict[str, Any]:
    """The repository's ``activation.yaml`` with the hand-built layout's model."""
    return with_layout(yaml.safe_load((REPO / "activation.yaml").read_text(encoding="utf-8")))


def write_layout_config(
    path: Path, config: dict[str, Any] | None = None, *, catalog: bool = False
) -> Path:
    """Write ``config`` (default :func:`repo_config`; its ``source`` replaced by the layout's)
    to ``path``; return ``path``. With ``catalog``, the layout's catalog goes beside it (the
    example segments' traits and web events validate; ``sql:`` segments then bind to the
    canonical views only); without, the default catalog applies (``sql:`` segments may read
    the ``main`` tables by name)."""
    data = with_layout(config) if config is not None else repo_config()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    if catalog:
        shutil.copyfile(CATALOG, catalog_path_for(path))
    return path


def layout_project(folder: Path) -> ProjectConfig:
    """The repository's project config with the hand-built layout's model and its catalog,
    written in ``folder`` and loaded: the example segments validate against it."""
    return load_project_config(write_layout_config(folder / "activation.yaml", catalog=True))


def create_layout_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create the hand-built layout's empty tables and the product's views over them for
    this model (idempotent)."""
    create_source_schema(con)
    config = repo_config()
    project = ProjectConfig.model_validate(config)
    refresh_source_views(con, project.source, tuple(project.purposes))
