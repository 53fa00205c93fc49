from srgan_core.markdown import markdown_table


def test_table_has_header_rule_and_rows():
    text = markdown_table(["method", "PSNR"], [["bicubic", "28.42"], ["srgan", 29.2]])
    assert text.splitlines() == ["| method | PSNR |", "|---|---|", "| bicubic | 28.42 |", "| srgan | 29.2 |"]


def test_pipe_in_cell_is_escaped():
    assert markdown_table(["a"], [["x|y"]]).splitlines()[-1] == "| x\\|y |"
