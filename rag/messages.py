"""What the library tells a user, in Chinese and English: a Problem has a code, its text is chosen by language."""
from __future__ import annotations

from typing import Any

LANGUAGES = ("zh", "en")
MESSAGES = {
    "question_empty": {"zh": "问题是空的，请输入一个问题。", "en": "The question is empty: please type a question."},
    "question_too_long": {
        "zh": "问题有 {length} 个字符，超过了 {limit} 个字符的上限，请缩短后再问。",
        "en": "The question is {length} characters long; the limit is {limit}. Please shorten it.",
    },
    "top_k_range": {"zh": "段落数应在 1 到 {limit} 之间，而不是 {top_k}。", "en": "top_k must be between 1 and {limit}, not {top_k}."},
    "unsupported_type": {"zh": "{name}：不支持的文件类型（支持 {suffixes}）", "en": "{name}: not a supported document ({suffixes})"},
    "unusable_name": {"zh": "{name}：文件名中没有可用的字符", "en": "{name}: the file name has no usable characters"},
    "too_large": {"zh": "{name}：{size} MiB，超过了 {limit} MiB 的上限", "en": "{name}: {size} MiB is over the {limit} MiB limit"},
    "refused": {"zh": "{name}：{reason}", "en": "{name}: {reason}"},
    "no_such_document": {"zh": "{name}：知识库里没有这个文件", "en": "{name}: no such document in the knowledge base"},
    # why a file cannot be read (UnreadableDocument)
    "encrypted": {"zh": "文件已加密，需要密码", "en": "encrypted: it needs a password"},
    "damaged": {"zh": "文件已损坏，或不是 {kind} 文件（{detail}）", "en": "damaged or not a {kind} file ({detail})"},
    "empty": {"zh": "文件是空的", "en": "empty file"},
    "undecodable": {"zh": "无法识别文本编码", "en": "not decodable text"},
    "no_text": {"zh": "没有可读的文字", "en": "no text in it"},
    "scanned": {
        "zh": "没有文字层：扫描件要安装文字识别（pip install rapidocr-onnxruntime==1.4.4）后才能读取",
        "en": "no text layer: a scanned PDF is read once OCR is installed (pip install rapidocr-onnxruntime==1.4.4)",
    },
}


class Problem(ValueError):
    """Input the library cannot use; str() is the English text, text(lang) the text in the page's language."""

    def __init__(self, code: str, **params: Any):
        self.code, self.params = code, params
        super().__init__(self.text("en"))

    def text(self, lang: str) -> str:
        """The message in `lang` ("zh" or "en"); a Problem given as a parameter is told in the same language."""
        params = {k: v.text(lang) if isinstance(v, Problem) else v for k, v in self.params.items()}
        return MESSAGES[self.code][lang if lang in LANGUAGES else "en"].format(**params)
