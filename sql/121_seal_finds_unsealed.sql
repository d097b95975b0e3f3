-- The seal (050) runs once per finalized row at commit, and each run looked for
-- the series' unsealed documents through invoices_series, which holds every
-- document of the series: a close of 1,000 invoices late in a year read the
-- year's documents 1,000 times (16 s of a 10-million-event close with a year of
-- history). The unsealed ones are a few and only until their commit: an index
-- of just those makes every run but the first find nothing at once.
CREATE INDEX invoices_unsealed ON openfaas_metering.invoices
    (openfaas_metering.document_series(number), number_seq)
    WHERE number IS NOT NULL AND document_sha256 IS NULL;

