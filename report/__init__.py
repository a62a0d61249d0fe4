"""The DR report: RPO and RTO measured against the plan's targets, drill history, the
monthly review, as JSON and as a self-contained HTML page with inline SVG charts."""
