"""mmzoo's built-in plugin families, each registered through the ``mmzoo`` entry point like any plugin."""
