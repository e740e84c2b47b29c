"""The corpus's one train/test split (``robusthash.synth.corpus``)."""

from __future__ import annotations

import pytest

from robusthash.synth.corpus import Corpus, object_split, refuse_test_split, validation_share


def test_the_corpus_lists_its_splits_and_cutouts(tmp_path):
    (tmp_path / "train.txt").write_text("photos/b.jpg\nphotos/a.jpg\n\n")
    (tmp_path / "test.txt").write_text("photos/c.jpg\n")
    (tmp_path / "objects").mkdir()
    names = [f"objects__{i:04d}.png" for i in range(20)]
    for name in names:
        (tmp_path / "objects" / name).write_bytes(b"")
    corpus = Corpus(tmp_path)
    assert corpus.train() == [tmp_path / "photos" / "b.jpg", tmp_path / "photos" / "a.jpg"]  # list order kept
    assert corpus.test() == [tmp_path / "photos" / "c.jpg"]
    assert corpus.extra_train() == []  # built without --extra
    (tmp_path / "extra_train.txt").write_text("extra/x.jpg\n")
    assert corpus.extra_train() == [tmp_path / "extra" / "x.jpg"]
    train, test = corpus.objects("train"), corpus.objects("test")
    assert sorted(train + test) == [tmp_path / "objects" / n for n in names] and train == sorted(train)
    assert all(object_split(p) == "train" for p in train) and all(object_split(p) == "test" for p in test)
    with pytest.raises(ValueError, match="unknown split"):
        corpus.objects("extra")


def test_training_refuses_the_test_list(tmp_path):
    corpus = Corpus(tmp_path)
    assert refuse_test_split(corpus.train_list) == corpus.train_list
    with pytest.raises(ValueError, match="test split"):
        refuse_test_split(corpus.test_list)


def test_the_validation_share_is_a_fixed_fifth_of_the_extra_photos(tmp_path):
    corpus = Corpus(tmp_path)
    with pytest.raises(ValueError, match="--extra"):
        corpus.write_validation_list()
    names = [f"extra/photo{i:03d}.jpg" for i in range(200)]
    (tmp_path / "extra_train.txt").write_text("".join(f"{n}\n" for n in names))
    assert corpus.validation() == []  # not written yet
    corpus.write_validation_list()
    held = corpus.validation()
    assert held == [tmp_path / n for n in names if validation_share(n)]  # list order, by file name alone
    assert 25 <= len(held) <= 55
    assert validation_share("x/photo007.jpg") == validation_share("photo007.jpg")  # the name, not the folder
    with pytest.raises(ValueError, match="validation share"):
        refuse_test_split(corpus.validation_list)


def test_the_leiden_aratea_paintings_are_one_artwork_in_both_forms():
    from robusthash.synth.corpus import artwork_key

    root = "/usr/share/stellarium/skycultures/greek_leidenAratea/"
    assert artwork_key(root + "per_Aratea_bg.jpg") == artwork_key(root + "descr_pics/aratea_small_per.jpg")
    assert artwork_key(root + "aqr_Aratea_b_bg.jpg") == artwork_key(root + "descr_pics/aratea_small_aqr.jpg")
    assert artwork_key(root + "plejaden_Aratea_bg.jpg") == artwork_key(root + "descr_pics/aratea_small_plei.jpg")
    assert artwork_key(root + "Lyr_Aratea_bg.jpg") == artwork_key(root + "descr_pics/aratea_small_lyr.jpg")
    assert artwork_key(root + "per_Aratea_bg.jpg") != artwork_key(root + "leo_Aratea_bg.jpg")
    # A picture of several constellations stays its own, as does any other file.
    assert artwork_key(root + "Dra+UMa+UMi_Aratea_bg.jpg") != artwork_key(root + "descr_pics/aratea_small_dra.jpg")
    assert artwork_key("/usr/share/x/a.jpg") == "/usr/share/x/a.jpg"


def test_files_of_one_picture_are_one_artwork_and_others_stay_distinct(tmp_path):
    rows = [("photos/skyart__61ef8e993f.jpg", "/s/arabic_al-sufi/Sufi_FishA.png"),
            ("photos/skyart__eaf2d38008.jpg", "/s/arabic_al-sufi/Sufi_FishB.png"),
            ("photos/skyart__1acb77f8a4.jpg", "/s/chinese_contemporary/delphinus.png"),
            ("photos/skyart__e2b29ab10d.jpg", "/s/indian/shimshumAra.png"),
            ("photos/wallpapers__a.jpg", "/usr/share/wallpapers/Flow/contents/images/720x1440.jpg"),
            ("photos/wallpapers__b.jpg", "/usr/share/wallpapers/Flow/contents/images_dark/5120x2880.jpg"),
            ("photos/gcompris__x.jpg", "/lang/76")]
    (tmp_path / "manifest.csv").write_text("file,kind,debian_package,original_path,width,height,group\n" + "".join(
        f"{file},photos,p,{source},1,1,g\n" for file, source in rows))
    art = {path.name: key for path, key in Corpus(tmp_path).artworks().items()}
    assert art["skyart__61ef8e993f.jpg"] == art["skyart__eaf2d38008.jpg"]  # one fish drawing, mirrored
    assert art["skyart__1acb77f8a4.jpg"] == art["skyart__e2b29ab10d.jpg"]  # one dolphin, mirrored
    assert art["wallpapers__a.jpg"] == art["wallpapers__b.jpg"]  # one design, light and dark
    assert len({art["skyart__61ef8e993f.jpg"], art["skyart__1acb77f8a4.jpg"], art["wallpapers__a.jpg"],
                art["gcompris__x.jpg"]}) == 4
