package dev.morastream.streams.records;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.function.Predicate;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * Reading a dead-letter topic written by {@link DeadLetters} ({@link #read}, {@link Letter}), and
 * replaying letters ({@link #replay}): each is produced again as it was (original key, value and
 * headers, without the error headers) to its source topic or another one, for example after the
 * configuration that rejected it was fixed. Read with an assigned consumer (no consumer group, nothing
 * committed): the topic is left as it is.
 */
public final class DeadLetterTopic {
    private static final ObjectMapper JSON = new ObjectMapper();

    private DeadLetterTopic() {}

    /**
     * One dead letter, as {@code dead-letters list} shows it.
     *
     * @param size bytes of the original value ({@code x-original-size} when it was cut)
     * @param recordId the record's {@code id} field when its value is a JSON object with one, else
     *     {@code <topic>-<partition>-<offset>} of its source (the id a trained record would have had)
     * @param deadLetteredAt epoch ms ({@code x-dead-lettered-at}, else the letter's timestamp)
     */
    public record Letter(int partition, long offset, String reason, String detail, String sourceTopic, int sourcePartition,
                         long sourceOffset, long size, String recordId, String truncated, String group,
                         String exceptionClass, long deadLetteredAt, ConsumerRecord<byte[], byte[]> record) {
        public boolean isTruncated() {
            return truncated != null;
        }
    }

    /** What {@link #replay} did. */
    public record Replayed(int replayed, int skippedTruncated, Map<String, Integer> perTopic) {}

    /** Every letter in {@code topic} now (from the beginning to the end offsets at the call). */
    public static List<Letter> read(Map<String, Object> clientProps, String topic, Duration timeout) throws Exception {
        Map<String, Object> props = new HashMap<>(clientProps);
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        props.remove(ConsumerConfig.GROUP_ID_CONFIG);
        List<Letter> out = new ArrayList<>();
        try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(props, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
            List<PartitionInfo> infos = c.partitionsFor(topic, timeout);
            if (infos == null || infos.isEmpty()) {
                throw new IllegalArgumentException("no topic " + topic);
            }
            List<TopicPartition> tps = infos.stream().map(p -> new TopicPartition(topic, p.partition())).toList();
            c.assign(tps);
            c.seekToBeginning(tps);
            Map<TopicPartition, Long> end = c.endOffsets(tps, timeout);
            long deadline = System.nanoTime() + timeout.toNanos();
            while (tps.stream().anyMatch(tp -> c.position(tp) < end.get(tp))) {
                if (System.nanoTime() > deadline) {
                    throw new java.util.concurrent.TimeoutException("reading " + topic + " took longer than " + timeout);
                }
                for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(200))) {
                    if (r.offset() < end.get(new TopicPartition(r.topic(), r.partition()))) {
                        out.add(letter(r));
                    }
                }
            }
        }
        return out;
    }

    /** A letter's fields from its headers. */
    public static Letter letter(ConsumerRecord<byte[], byte[]> r) {
        String srcTopic = DeadLetters.header(r, DeadLetters.SOURCE_TOPIC);
        int srcPartition = (int) number(DeadLetters.header(r, DeadLetters.SOURCE_PARTITION), -1);
        long srcOffset = number(DeadLetters.header(r, DeadLetters.SOURCE_OFFSET), -1);
        String truncated = DeadLetters.header(r, DeadLetters.TRUNCATED);
        long size = truncated != null ? number(DeadLetters.header(r, DeadLetters.ORIGINAL_SIZE), -1)
                : r.value() == null ? 0 : r.value().length;
        long at = number(DeadLetters.header(r, DeadLetters.DEAD_LETTERED_AT), r.timestamp());
        return new Letter(r.partition(), r.offset(), DeadLetters.header(r, DeadLetters.REASON), DeadLetters.header(r, DeadLetters.REASON_DETAIL),
                srcTopic, srcPartition, srcOffset, size, recordId(r.value(), srcTopic, srcPartition, srcOffset), truncated,
                DeadLetters.header(r, DeadLetters.CONSUMER_GROUP), DeadLetters.header(r, DeadLetters.CONNECT_EXCEPTION_CLASS), at, r);
    }

    /**
     * Produces {@code letters} again (those {@code which} selects), in their order: original key,
     * value and headers without the error headers, to {@code toTopic} ({@code null}: each to its
     * source topic), partitioned by key as a new record. Letters cut to fit are skipped (their
     * original bytes are gone). Waits for every acknowledgement (acks=all, idempotent).
     */
    public static Replayed replay(Map<String, Object> clientProps, List<Letter> letters, Predicate<Letter> which, String toTopic)
            throws Exception {
        Map<String, Object> props = new HashMap<>(clientProps);
        props.put(ProducerConfig.ACKS_CONFIG, "all");
        props.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
        int replayed = 0;
        int truncated = 0;
        Map<String, Integer> perTopic = new java.util.TreeMap<>();
        List<CompletableFuture<Void>> acks = new ArrayList<>();
        try (KafkaProducer<byte[], byte[]> p = new KafkaProducer<>(props, new ByteArraySerializer(), new ByteArraySerializer())) {
            for (Letter l : letters) {
                if (!which.test(l)) {
                    continue;
                }
                if (l.isTruncated()) {
                    truncated++;
                    continue;
                }
                String to = toTopic != null ? toTopic : l.sourceTopic();
                if (to == null) {
                    throw new IllegalArgumentException("letter " + l.partition() + "@" + l.offset() + " names no source topic: give --to");
                }
                RecordHeaders headers = new RecordHeaders();
                for (Header h : l.record().headers()) {
                    if (!DeadLetters.isErrorHeader(h.key())) {
                        headers.add(h);
                    }
                }
                CompletableFuture<Void> f = new CompletableFuture<>();
                p.send(new ProducerRecord<>(to, null, l.record().key(), l.record().value(), headers), (md, e) -> {
                    if (e != null) {
                        f.completeExceptionally(e);
                    } else {
                        f.complete(null);
                    }
                });
                acks.add(f);
                replayed++;
                perTopic.merge(to, 1, Integer::sum);
            }
            p.flush();
            CompletableFuture.allOf(acks.toArray(CompletableFuture[]::new)).get(60, TimeUnit.SECONDS);
        }
        return new Replayed(replayed, truncated, perTopic);
    }

    private static String recordId(byte[] value, String topic, int partition, long offset) {
        if (value != null && value.length > 0) {
            String s = new String(value, StandardCharsets.UTF_8).stripLeading();
            if (s.startsWith("{")) {
                try {
                    JsonNode id = JSON.readTree(s).get("id");
                    if (id != null && (id.isTextual() || id.isIntegralNumber())) {
                        return id.asText();
                    }
                } catch (Exception e) {
                    // not JSON after all (or cut): the source position names it
                }
            }
        }
        return topic + "-" + partition + "-" + offset;
    }

    private static long number(String s, long otherwise) {
        try {
            return s == null ? otherwise : Long.parseLong(s.trim());
        } catch (NumberFormatException e) {
            return otherwise;
        }
    }
}
