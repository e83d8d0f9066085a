package dev.morastream.streams.records;

/** What {@link RecordDecoder} makes of one Kafka record: a usable {@link DomainRecord} or a {@link Rejected} one. */
public sealed interface DecodeResult permits DomainRecord, Rejected {
    String topic();

    int partition();

    long offset();
}
