package dev.morastream.streams;

import static dev.morastream.streams.StreamTestSupport.await;
import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.morastream.models.tokenizer.ByteTokenizer;
import dev.morastream.streams.kafka.EmbeddedKafka;
import dev.morastream.streams.records.DeadLetters;
import dev.morastream.streams.records.RecordDecoder;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.pekko.Done;
import org.apache.pekko.kafka.javadsl.Consumer;

/**
 * What the tests of a secured listener (SASL, TLS) share: the stream, the dead letters and a plain
 * producer, each given only the client properties a user of such a cluster sets.
 */
abstract class SecuredClusterTestBase extends StreamTestBase {
    static final Duration WAIT = Duration.ofSeconds(30);

    /** The broker, started by the subclass with its secured listener. */
    abstract EmbeddedKafka kafka();

    /** The secured listener's name (its security protocol). */
    abstract String listener();

    DeadLetters deadLetters(String topic, Map<String, String> client) {
        Map<String, Object> props = new HashMap<>(client);
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, kafka().bootstrapServers(listener()));
        props.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, (int) WAIT.toMillis());
        DeadLetters dl = DeadLetters.create(props, topic);
        toClose.add(dl);
        return dl;
    }

    TrainingStream.Settings settings(String topic, Map<String, String> client) {
        Map<String, String> c = new HashMap<>(client);
        c.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "100");
        return new TrainingStream.Settings(kafka().bootstrapServers(listener()), c, topic + "-g", Set.of(topic),
                RecordDecoder.Config.single("law"), 31, 2, 2, Duration.ofMillis(200));
    }

    /**
     * {@code n} records (every tenth with a control character) produced over the listener, then read by
     * the stream: the good ones are trained, the bad ones are in the dead-letter topic (written over the
     * listener too), and the group committed every offset.
     */
    void mixedTopicIsTrainedDeadLetteredAndCommitted(String topic, int n, Map<String, String> client) throws Exception {
        String dlq = topic + "-dlq";
        kafka().createTopic(topic, 2);
        kafka().createTopic(dlq, 1);
        int good = 0;
        int bad = 0;
        // produced over the listener too: the same properties work for a plain Kafka client
        Map<String, Object> producerProps = new HashMap<>(client);
        producerProps.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, kafka().bootstrapServers(listener()));
        List<Future<RecordMetadata>> sent = new ArrayList<>();
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(producerProps, new ByteArraySerializer(), new ByteArraySerializer())) {
            for (int i = 0; i < n; i++) {
                String text = i % 10 == 9 ? "bell\u0007 inside " + i : "[s" + i + "] a text over " + listener() + " #" + i;
                if (i % 10 == 9) {
                    bad++;
                } else {
                    good++;
                }
                sent.add(producer.send(new ProducerRecord<>(topic, i % 2, null, text.getBytes(StandardCharsets.UTF_8))));
                if (i == 0) {
                    // the first waits: a broken set-up fails once here, not once per record after a reconnect
                    sent.get(0).get(WAIT.toMillis(), TimeUnit.MILLISECONDS);
                }
            }
            for (Future<RecordMetadata> f : sent) {
                f.get(WAIT.toMillis(), TimeUnit.MILLISECONDS);
            }
        }
        RecordingSink sink = new RecordingSink(1);
        DeadLetters deadLetters = deadLetters(dlq, client);
        Consumer.DrainingControl<Done> control = TrainingStream.run(kit.system(), mat, settings(topic, client),
                new ByteTokenizer(), deadLetters, sink, Map.of());
        await(sink.afterRecords(good), WAIT);
        int expectedBad = bad;
        kit.createTestProbe().awaitAssert(WAIT, Duration.ofMillis(20), () -> {
            assertEquals(expectedBad, deadLetters.count());
            return null;
        });
        await(control.drainAndShutdown(kit.system().executionContext()), WAIT);

        assertEquals(good, sink.texts(true).get("law").size());
        long inDlq = kafka().admin().listOffsets(Map.of(new TopicPartition(dlq, 0), OffsetSpec.latest()))
                .all().get().values().iterator().next().offset();
        assertEquals(bad, inDlq);
        long committed = kafka().admin().listConsumerGroupOffsets(topic + "-g").partitionsToOffsetAndMetadata().get()
                .values().stream().mapToLong(OffsetAndMetadata::offset).sum();
        assertEquals(good + bad, committed);
    }
}
