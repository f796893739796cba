
$outbound|80|v2|c-weighted.extsvc.com


10.1.0.2P"