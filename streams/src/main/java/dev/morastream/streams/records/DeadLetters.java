package dev.morastream.streams.records;

import java.nio.charset.StandardCharsets;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.Producer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.header.Headers;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * Writes rejected records to a dead-letter topic: the ORIGINAL key, value and headers, plus
 * {@code x-reason} (a {@link Rejected.Reason#code()}), {@code x-reason-detail},
 * {@code x-source-topic}, {@code x-source-partition} and {@code x-source-offset}. Counts them.
 *
 * <p>{@link #send} completes when the broker has acknowledged the dead letter (acks=all,
 * idempotent producer), so a source offset is never committed before its dead letter is durable.
 * Delivery is at least once: a crash between the dead letter and the checkpoint writes it again.
 */
public final class DeadLetters implements AutoCloseable {
    public static final String REASON = "x-reason";
    public static final String REASON_DETAIL = "x-reason-detail";
    public static final String SOURCE_TOPIC = "x-source-topic";
    public static final String SOURCE_PARTITION = "x-source-partition";
    public static final String SOURCE_OFFSET = "x-source-offset";

    private final Producer<byte[], byte[]> producer;
    private final String topic;
    private final AtomicLong count = new AtomicLong();

    public DeadLetters(Producer<byte[], byte[]> producer, String topic) {
        this.producer = Objects.requireNonNull(producer);
        this.topic = Objects.requireNonNull(topic);
    }

    /** A dead-letter writer with its own producer; {@code clientProps} pass through (SASL, TLS…). */
    public static DeadLetters create(Map<String, Object> clientProps, String topic) {
        Map<String, Object> props = new java.util.HashMap<>(clientProps);
        props.putIfAbsent(ProducerConfig.ACKS_CONFIG, "all");
        props.putIfAbsent(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
        props.putIfAbsent(ProducerConfig.LINGER_MS_CONFIG, 5);
        return new DeadLetters(new KafkaProducer<>(props, new ByteArraySerializer(), new ByteArraySerializer()), topic);
    }

    public String topic() {
        return topic;
    }

    /** Dead letters written (acknowledged) so far. */
    public long count() {
        return count.get();
    }

    public CompletionStage<Rejected> send(Rejected rejected) {
        var src = rejected.source();
        Headers headers = new RecordHeaders();
        if (src.headers() != null) {
            src.headers().forEach(headers::add);
        }
        headers.add(REASON, bytes(rejected.reason().code()));
        if (rejected.detail() != null) {
            headers.add(REASON_DETAIL, bytes(rejected.detail()));
        }
        headers.add(SOURCE_TOPIC, bytes(src.topic()));
        headers.add(SOURCE_PARTITION, bytes(Integer.toString(src.partition())));
        headers.add(SOURCE_OFFSET, bytes(Long.toString(src.offset())));
        CompletableFuture<Rejected> done = new CompletableFuture<>();
        producer.send(new ProducerRecord<>(topic, null, src.key(), src.value(), headers), (meta, err) -> {
            if (err != null) {
                done.completeExceptionally(err);
            } else {
                count.incrementAndGet();
                done.complete(rejected);
            }
        });
        return done;
    }

    private static byte[] bytes(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    @Override
    public void close() {
        producer.close(java.time.Duration.ofSeconds(5));
    }
}
