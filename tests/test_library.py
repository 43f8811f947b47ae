"""Adding and removing knowledge-base files safely, and the users who may do it."""
from __future__ import annotations

from pathlib import Path

import pytest

from rag.auth import hash_password, load_users, verify
from rag.library import add_document, document_name, documents, remove_document
from rag.messages import Problem

DOCUMENTS = Path(__file__).parent / "fixtures" / "documents"
MIB = 2**20


@pytest.mark.parametrize("given, safe", [
    ("../../etc/notes.txt", "notes.txt"),
    ("C:\\Users\\x\\报告.PDF", "报告.pdf"),
    ("a<b>|c?.docx", "a_b__c_.docx"),
    ("  政策\u200b解读\x00.html ", "政策解读.html"),
    ("x" * 300 + ".md", "x" * 117 + ".md"),
])
def test_upload_names_are_made_safe(given, safe):
    assert document_name(given) == safe


@pytest.mark.parametrize("name", ["run.exe", "notes", "../.txt", ".pdf", "archive.tar.gz"])
def test_unsupported_or_empty_names_are_refused(name):
    with pytest.raises(ValueError, match="not a supported document|no usable characters"):
        document_name(name)


def test_a_good_file_is_added_and_removed(tmp_path):
    seeds = tmp_path / "seeds"
    assert add_document(seeds, DOCUMENTS / "notice.docx", "/tmp/upload/notice.docx", 50 * MIB) == "notice.docx"
    assert documents(seeds) == ["notice.docx"] and [p.name for p in seeds.iterdir()] == ["notice.docx"]
    remove_document(seeds, "notice.docx")
    assert documents(seeds) == []


@pytest.mark.parametrize("fixture, reason", [
    ("encrypted.pdf", "encrypted"), ("damaged.pdf", "damaged"), ("empty.docx", "empty"), ("two_column.pdf", "over the 0 MiB limit"),
])
def test_a_bad_file_is_refused_by_name_and_nothing_is_written(tmp_path, fixture, reason):
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    limit = 1024 if reason.startswith("over") else 50 * MIB
    with pytest.raises(ValueError, match=f"^{fixture}: .*{reason}"):
        add_document(seeds, DOCUMENTS / fixture, fixture, limit)
    assert list(seeds.iterdir()) == []


def test_undecodable_text_is_refused(tmp_path):
    upload = tmp_path / "noise.txt"
    upload.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(ValueError, match="noise.txt: not decodable text"):
        add_document(tmp_path / "seeds", upload, upload.name, MIB)


@pytest.mark.parametrize("name", ["../secret.txt", "sub/x.txt", "missing.txt", "seeds"])
def test_only_listed_documents_can_be_removed(tmp_path, name):
    (tmp_path / "secret.txt").write_text("x", encoding="utf-8")
    seeds = tmp_path / "seeds"
    (seeds / "sub").mkdir(parents=True)
    (seeds / "sub" / "x.txt").write_text("x", encoding="utf-8")
    with pytest.raises(ValueError, match="no such document"):
        remove_document(seeds, name)
    assert (tmp_path / "secret.txt").exists() and (seeds / "sub" / "x.txt").exists()


def test_passwords_are_checked_against_salted_hashes(tmp_path):
    stored = hash_password("s3cret", iterations=1000)
    assert stored.startswith("pbkdf2_sha256$1000$") and "s3cret" not in stored
    assert hash_password("s3cret", iterations=1000) != stored  # a fresh salt each time
    users_file = tmp_path / "users"
    users_file.write_text(f"# who may change the knowledge base\nana:{stored}\n\n", encoding="utf-8")
    users = load_users(users_file)
    assert verify(users, "ana", "s3cret") and not verify(users, "ana", "S3cret") and not verify(users, "bob", "s3cret")
    users_file.write_text("ana:plaintext\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 1"):
        load_users(users_file)


def test_problems_are_told_in_the_page_language(tmp_path):
    with pytest.raises(Problem) as refused:
        add_document(tmp_path, DOCUMENTS / "encrypted.pdf", "encrypted.pdf", MIB)
    assert refused.value.text("zh") == "encrypted.pdf：文件已加密，需要密码"
    assert refused.value.text("en") == str(refused.value) == "encrypted.pdf: encrypted: it needs a password"
