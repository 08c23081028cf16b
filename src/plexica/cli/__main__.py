from plexica.cli.main import app

app(prog_name="plexica")
