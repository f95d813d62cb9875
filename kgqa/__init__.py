"""kgqa core: settings, bundled assets, typed records shared across packages, the QA engine and the CLI."""
