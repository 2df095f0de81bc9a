"""The browser shell every page shares: base templates, the design system's CSS and JS,
static assets, security headers and safe redirects."""
