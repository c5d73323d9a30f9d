"""Slot names follow the original's rules, so an existing deployment's slot is found."""

from electric_trio.replication import main_slot_name, temp_slot_name


def test_main_slot_name_is_derived_from_the_database() -> None:
    assert main_slot_name("electric") == "electric_replication_out_electric"
    assert main_slot_name("My-App DB") == "electric_replication_out_my_app_db"
    assert main_slot_name("__x__") == "electric_replication_out_x"
    long = main_slot_name("d" * 100)
    assert long == "electric_replication_out_" + "d" * 38
    assert len(long) <= 63


def test_temp_slot_name_fits_postgres_limit() -> None:
    main = main_slot_name("d" * 100)
    assert temp_slot_name(main) == main[:59] + "_rc"
    assert len(temp_slot_name(main)) <= 63
