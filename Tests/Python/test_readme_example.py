"""The README's Python example (the ```python block after "<!-- example: python -->"), run
as written with the library this test session uses, and its y checked against numpy."""

import pathlib

import numpy as np

from conftest import library_path

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def readme_example():
    lines = README.read_text().splitlines()
    start = lines.index("<!-- example: python -->")
    assert lines[start + 1] == "```python", "the example's block follows its marker"
    end = lines.index("```", start + 2)
    return "\n".join(lines[start + 2:end])


def test_readme_python_example(normcl):
    names = {"library_path": library_path()}
    exec(compile(readme_example(), "README.md (example: python)", "exec"), names)
    x, y = names["x"].astype(np.float64), names["y"]
    mean = x.mean(axis=1, keepdims=True)
    expected = (x - mean) / np.sqrt(((x - mean) ** 2).mean(axis=1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
