"""Reading the docs' Markdown as the doc tests do: outside code blocks, tables as rows of cells."""


def without_code_blocks(text):
    """The lines of `text` outside fenced code blocks (blank lines in their place, so that line
    numbers stay), where nothing is a link or a heading."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            lines.append("")
        else:
            lines.append("" if fenced else line)
    return lines


def table_rows(path, header):
    """The rows, as lists of stripped cells, of the first table in `path` whose header row is
    `header`."""
    lines = without_code_blocks(path.read_text())
    wanted = [cell.lower() for cell in header]
    for i, line in enumerate(lines):
        if line.startswith("|") and [c.strip().lower() for c in line.strip().strip("|").split("|")] == wanted:
            rows = []
            for row in lines[i + 2 :]:  # past the header and its |---| line
                if not row.startswith("|"):
                    break
                cells = [c.strip() for c in row.strip()[1:-1].split("|")]
                assert len(cells) == len(header), f"{path.name}: a row with {len(cells)} cells: {row}"
                rows.append(cells)
            return rows
    raise AssertionError(f"{path.name} has no table headed {' | '.join(header)}")
