"""The console's pages, one module per resource (see docs/console.md, "Adding a page")."""
