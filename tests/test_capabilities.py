"""The README's capability table is generated from the backends' own supports()."""

from conftest import ROOT
from poolconform.capabilities import END, START, capability_table, readme_section


def test_readme_holds_the_generated_capability_table():
    text = (ROOT / "README.md").read_text()
    start, end = text.index(START), text.index(END) + len(END)
    assert text[start:end] == readme_section(), "regenerate with: python -m poolconform.capabilities"


def test_table_has_every_default_backend_and_real_refusals():
    table = capability_table()
    header = table.splitlines()[0]
    for name in ("onnxruntime-cpu", "torch-cpu", "keras-jax", "tensorflow", "openvino-cpu"):
        assert f"`{name}`" in header
    assert "Keras pooling has no dilation" in table  # a refusal comes from the backend's own code
    rows = [line for line in table.splitlines() if line.startswith("| MaxPool, no padding")]
    assert rows and "no" not in rows[0].split("|", 2)[2]
