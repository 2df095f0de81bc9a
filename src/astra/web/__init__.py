"""The browser side: base templates, the design system's CSS and JS, and the sign-in pages."""
