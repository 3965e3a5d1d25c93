"""Page tests through Streamlit's AppTest: each page runs with no exception and shows what it promises."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]


def _run(page: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / page), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def test_landing_page_shows_setup_and_device():
    at = _run("streamlit_app.py")
    assert at.title[0].value.endswith("FreezeLab")
    assert any("CPU" in c.value or "GPU" in c.value for c in at.caption)
    text = " ".join(m.value for m in at.markdown)
    assert "offline demo" in text and "Trainable blocks: none (feature extraction)" in text


def test_data_page_loads_the_demo_and_reacts_to_a_new_choice():
    at = _run("pages/1_Data.py")
    assert "100 training and 500 validation images, 5 classes" in at.success[0].value
    at.select_slider(key="data.per_class").set_value(5)
    at.radio(key="data.task").set_value("source")
    at.button[0].click().run()
    assert not at.exception
    assert "25 training and 500 validation images, 5 classes" in at.success[0].value


def test_data_page_explains_a_missing_folder():
    at = _run("pages/1_Data.py")
    at.selectbox(key="data.source").set_value("folder")
    at.text_input(key="data.path").input("/no/such/folder")
    at.button[0].click().run()
    assert not at.exception
    assert "does not exist" in at.error[0].value
